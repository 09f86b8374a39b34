"""SV3D against numbers recorded from the upstream code (tests/fixtures/sv3d/README.md).

Default suite: the vector conditioning (bit for bit), the UNet key map against upstream's key
list (full width and tiny), and a tiny-width UNet run through the v/EDM denoiser, the triangle
guider and the Euler sampler (one guided prediction, two steps, a 4-step sample).
Opt-in (`-m heavy`, ~6 GB): the full-width SV3D-P UNet forward.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny models: per-op overhead dominates
pytest.importorskip("diffusers")
from safetensors.torch import load_file  # noqa: E402

from core.errors import CheckpointError  # noqa: E402
from core.models.sv3d import PRESETS  # noqa: E402
from core.models.sv3d.conditioning import sinusoidal, vector_conditioning  # noqa: E402
from core.models.sv3d.keymap import UNET, to_ours, to_upstream, unet_to_ours  # noqa: E402
from core.models.sv3d.loader import expected_upstream_shapes, rule_model  # noqa: E402
from core.models.sv3d.unet import VideoUNet  # noqa: E402
from core.orbit import model_angles  # noqa: E402
from core.sampling.edm import (GuidedVDenoiser, VideoConditioning, edm_sigmas, sample_euler_edm,  # noqa: E402
                               triangle_scales, v_edm_scalings)

FIX = Path(__file__).parent / "fixtures" / "sv3d"
TOL = 1e-4


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_angles_and_vector_match_upstream_exactly():
    emb = load_file(FIX / "embeddings.safetensors")
    cases = json.loads((FIX / "embeddings.json").read_text())
    assert set(cases) == {"default", "lists"}
    for name, case in cases.items():
        a = model_angles(case["elevations_deg"], case["azimuths_deg"], 21)
        assert torch.equal(torch.tensor(a.polars_rad, dtype=torch.float64), emb[f"{name}_polars_rad"])
        assert torch.equal(torch.tensor(a.azimuths_rad, dtype=torch.float64), emb[f"{name}_azimuths_rad"])
        p = vector_conditioning(PRESETS["sv3d-p"].vector_dims, 21, 1e-5, a)
        u = vector_conditioning(PRESETS["sv3d-u"].vector_dims, 21, 1e-5)
        assert p.shape == (21, 1280) and u.shape == (21, 256)
        assert torch.equal(p, emb[f"p_{name}_vector"]), name
        assert torch.equal(u, emb[f"u_{name}_vector"]), name
    # The default orbit: the photo's view (last) has azimuth 0, the others climb by 360/21.
    az = emb["default_azimuths_rad"]
    assert float(az[-1]) == 0.0 and torch.allclose(az[:-1].diff(), torch.full((19,), 2 * torch.pi / 21, dtype=torch.float64))
    with pytest.raises(ValueError, match="polar and azimuth"):
        vector_conditioning((256, 512, 512), 21, 1e-5)


def test_sinusoidal_is_cos_then_sin():
    e = sinusoidal(torch.tensor([0.0, 1.0]), 8)
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert torch.allclose(e[1, 0], torch.cos(torch.tensor(1.0))) and torch.allclose(e[1, 4], torch.sin(torch.tensor(1.0)))
    assert sinusoidal(torch.tensor([0.5]), 7).shape == (1, 7)


@pytest.mark.parametrize("preset, fixture", [("sv3d-p", "sv3d_p_unet_keys.json.gz"), ("tiny-p", "tiny_p_unet_keys.json.gz")])
def test_unet_keymap_covers_upstream_keys(preset, fixture):
    with gzip.open(FIX / fixture, "rt") as f:
        upstream = {k: tuple(s) for k, s in json.load(f)}
    p = PRESETS[preset].unet
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in VideoUNet(p).net.state_dict().items()}
    mapped = {unet_to_ours(k, p): s for k, s in upstream.items()}
    assert mapped == ours  # a bijection with equal shapes
    expected = expected_upstream_shapes(preset)
    assert {k[len(UNET):]: s for k, s in expected.items() if k.startswith(UNET)} == upstream
    for k in expected:
        assert to_upstream(to_ours(k, p), p) == k


def test_released_layout_components():
    shapes = expected_upstream_shapes("sv3d-p")
    prefixes = {k.split(".")[0] for k in shapes}
    assert prefixes == {"model", "conditioner", "first_stage_model"}
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1280, 1280)
    assert shapes["conditioner.embedders.0.open_clip.model.visual.proj"] == (1280, 1024)
    assert shapes["conditioner.embedders.1.encoder.quant_conv.weight"] == (8, 8, 1, 1)
    assert shapes["first_stage_model.decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert not any(k.startswith("first_stage_model.post_quant_conv") for k in shapes)
    assert expected_upstream_shapes("sv3d-u")["model.diffusion_model.label_emb.0.0.weight"] == (1280, 256)


def test_tiny_unet_euler_edm_triangle_guider_matches_upstream():
    g = load_file(FIX / "tiny_step.safetensors")
    t = 21
    model = rule_model("tiny-p")
    scales = triangle_scales(t, 2.5)
    assert torch.equal(scales, g["guider_scale"][0])
    assert float(scales[0]) == float(scales[-1]) == 1.0 and float(scales[10]) == 2.5
    sigmas = edm_sigmas(4, sigma_max=700.0)
    assert torch.equal(sigmas, g["sigmas"])
    cond = VideoConditioning(g["crossattn"], g["concat"], g["vector"])
    uncond = VideoConditioning(torch.zeros_like(g["crossattn"]), torch.zeros_like(g["concat"]), g["vector"])
    den = GuidedVDenoiser(model.unet, cond, uncond, scales)
    steps = []
    with torch.no_grad():
        x = g["noise"] * torch.sqrt(1.0 + sigmas[0] ** 2)
        assert torch.equal(x, g["x_start"])
        assert rel(den(x, float(sigmas[0])), g["denoised_0"]) <= TOL
        final = sample_euler_edm(den, g["noise"], sigmas, lambda i, n, x: steps.append(x.clone()))
    assert rel(steps[0], g["x_after_1"]) <= TOL
    assert rel(steps[1], g["x_after_2"]) <= TOL
    assert rel(final, g["x_final_4_steps"]) <= TOL
    # Guidance matters: the unguided prediction is measurably different.
    with torch.no_grad():
        plain = GuidedVDenoiser(model.unet, cond, None, None)(x, float(sigmas[0]))
    assert rel(plain, g["denoised_0"]) > 100 * TOL


def test_v_edm_scalings():
    s = torch.tensor([0.5, 700.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = v_edm_scalings(s)
    assert torch.allclose(c_skip, 1 / (s ** 2 + 1)) and torch.allclose(c_noise, s.log() / 4)
    assert torch.allclose(c_in, c_skip.sqrt()) and torch.allclose(c_out, -s * c_in)
    # A perfect v prediction recovers x0: x = x0 + s*eps, v = c_in*(eps - s*x0) (unit-variance data).
    x0, eps = torch.tensor([0.3, -1.2], dtype=torch.float64), torch.tensor([1.1, 0.4], dtype=torch.float64)
    v = c_in * (eps - s * x0)
    assert torch.allclose(c_skip * (x0 + s * eps) + c_out * v, x0)


@pytest.mark.heavy
def test_full_width_unet_matches_upstream():
    from core.models.sv3d.keymap import unet_to_upstream
    from core.models.weight_rule import fill_with_rule

    io = load_file(FIX / "full_unet_io.safetensors")
    meta = json.loads((FIX / "full_meta.json").read_text())
    p = PRESETS["sv3d-p"].unet
    with torch.device("meta"):
        unet = VideoUNet(p)
    fill_with_rule(unet, lambda k: UNET + unet_to_upstream(k[len("net."):], p))
    first = unet.net.conv_in.weight.flatten()[:4].tolist()
    assert first == pytest.approx(meta["spot"][UNET + "input_blocks.0.0.weight"][:4], abs=1e-7)
    t, sigma = meta["T"], meta["sigma"]
    s = torch.full((1, t), sigma)
    _, _, c_in, c_noise = v_edm_scalings(s)
    x = io["noise"] * sigma * c_in[0, :, None, None, None]
    inp = torch.cat([x, io["concat"].expand(t, -1, -1, -1)], 1)[None]
    with torch.no_grad():
        out = unet(inp, c_noise, io["crossattn"], io["vector"][None])[0]
    assert out.shape == io["unet_out"].shape == (t, 4, meta["h"], meta["w"])
    assert rel(out, io["unet_out"]) <= TOL, rel(out, io["unet_out"])


def _write_rule_safetensors(path: Path, shapes: dict, dtype=torch.float16) -> None:
    """A safetensors file with the weight rule's value for every key, written one tensor at a
    time (the full-width state dict never sits in memory)."""
    import struct

    from core.models.weight_rule import rule_tensor

    code = {torch.float16: "F16", torch.float32: "F32"}[dtype]
    size = torch.tensor([], dtype=dtype).element_size()
    header, offset = {}, 0
    for k, s in shapes.items():
        n = size * int(torch.Size(s).numel())
        header[k] = {"dtype": code, "shape": list(s), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for k, s in shapes.items():
            f.write(rule_tensor(k, s).to(dtype).contiguous().numpy().tobytes())


@pytest.mark.heavy
def test_full_width_strict_load_of_the_released_layout(tmp_path):
    """sv3d_p.safetensors' layout at full width (UNet, OpenCLIP ViT-H, both VAE halves), weights by
    the rule in fp16 (about 4.6 GB on disk and in memory), loaded strictly through the key map."""
    from core.models.sv3d.loader import load_file
    from core.models.weight_rule import rule_tensor

    shapes = expected_upstream_shapes("sv3d-p")
    path = tmp_path / "sv3d_p.safetensors"
    _write_rule_safetensors(path, shapes)
    model = load_file("sv3d-p", path, dtype=torch.float16)
    state = model.state_dict()
    assert len(state) == len(shapes)
    for up, ours in (("model.diffusion_model.input_blocks.1.0.time_stack.in_layers.2.weight",
                      "unet.net.down_blocks.0.resnets.0.temporal_res_block.conv1.weight"),
                     ("model.diffusion_model.output_blocks.8.2.conv.weight", "unet.net.up_blocks.2.upsamplers.0.conv.weight"),
                     ("model.diffusion_model.label_emb.0.0.weight", "unet.net.add_embedding.linear_1.weight"),
                     ("conditioner.embedders.0.open_clip.model.visual.proj", "image_encoder.model.visual.proj"),
                     ("conditioner.embedders.1.encoder.quant_conv.weight", "cond_vae.quant_conv.weight"),
                     ("first_stage_model.decoder.up.0.block.2.conv2.weight", "vae_decoder.up.0.block.2.conv2.weight")):
        assert torch.equal(state[ours], rule_tensor(up, shapes[up]).half()), ours
    # The same file is refused for SV3D-U (its vector conditioning is 256 wide).
    with pytest.raises(CheckpointError, match="label_emb|add_embedding"):
        load_file("sv3d-u", path, dtype=torch.float16)
