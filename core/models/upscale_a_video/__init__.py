"""Upscale-A-Video (Zhou et al., CVPR 2024): diffusion video super-resolution x4, our implementation.

Modules (import them directly; this package import stays light):

    unet.py          the video UNet (`UNetVideo`, `PRESETS`, key map `to_upstream_key`); unet_blocks.py its layers
    scheduler.py     DDIM / low-res noise schedules, the DDIM adapter for core.sampling, frame windows
    pipeline.py      `UpscaleAVideo` (tiles, windows, guidance, propagation, VAE decode)
    loader.py        strict loading of the release files; `build_with_rule` for tests/benchmarks
    vae.py, raft.py, propagation.py, text_encoder.py   the other parts and their key maps

Typical use:

    from core.models.upscale_a_video.loader import ReleaseFiles, load_pipeline
    from core.models.upscale_a_video.pipeline import UpscaleSettings
    pipe = load_pipeline(ReleaseFiles.from_folder("pretrained_models/upscale_a_video"), "cuda")
    hr = pipe(lr_video, UpscaleSettings(prompt="a living room"), torch.Generator("cuda").manual_seed(10))

Licence of the original code and weights: NTU S-Lab License 1.0 (non-commercial).
"""
