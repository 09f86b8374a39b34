"""The DynamiCrafter 3D UNet with its camera variants: tiny-config CPU checks of every variant
(shapes, determinism, batching, the camera-off path, the camera wiring, dtypes), and (heavy)
one camera and one camera-free forward of the 512x320 CamI2V UNet against upstream's golden
outputs."""

from __future__ import annotations

import pytest
import torch

from core.models.cami2v import camera as C
from core.models.cami2v.blocks import (CameraCtrlTemporalBlock, CamI2VTemporalBlock, LevelCamera,
                                       MotionCtrlTemporalBlock, TemporalTransformer)
from core.models.cami2v.config import get_preset, tiny_params
from core.models.cami2v.model import build_meta, build_with_weight_rule
from core.models.cami2v.unet import UNet3D

VARIANTS = ("none", "cami2v", "cameractrl", "motionctrl")
FRAMES = 4


def _tiny(camera: str, learnable: bool = True):
    params = tiny_params(camera, learnable_image_scale=learnable, num_frames=FRAMES)
    return build_with_weight_rule(params, parts=("unet", "pose_encoder"), component_presets="tiny"), params


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 8, FRAMES, 8, 8, generator=g)
    t = torch.tensor([10, 700, 3, 999][:batch])
    context = torch.randn(batch, 5 + 2 * FRAMES, 32, generator=g)
    fs = torch.tensor([3, 5, 1, 8][:batch])
    return x, t, context, fs


def _rel_c2w(batch: int = 1, step: float = 0.2):
    c2w = torch.eye(4).repeat(batch, FRAMES, 1, 1)
    for b in range(batch):
        c2w[b, :, 0, 3] = torch.arange(FRAMES) * step * (b + 1)
        c2w[b, :, 2, 3] = torch.arange(FRAMES) * 0.05
    return c2w


K = torch.tensor([[[32.0, 0.0, 32.0], [0.0, 32.0, 32.0], [0.0, 0.0, 1.0]]])


def _camera(model, camera: str, batch: int = 1):
    if camera == "none":
        return None
    return model.camera_condition(_rel_c2w(batch), K.expand(batch, 3, 3),
                                  generator=torch.Generator().manual_seed(1))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_models():
    return {cam: _tiny(cam)[0] for cam in VARIANTS}


@pytest.mark.parametrize("camera", VARIANTS)
def test_shapes_determinism_and_batching(tiny_models, camera):
    model = tiny_models[camera]
    x, t, ctx, fs = _inputs(2)
    cond = _camera(model, camera)
    with torch.no_grad():
        y = model.unet(x, t, ctx, fs, cond)
        y_again = model.unet(x, t, ctx, fs, cond)
        y0 = model.unet(x[:1], t[:1], ctx[:1], fs[:1], cond)
        y1 = model.unet(x[1:], t[1:], ctx[1:], fs[1:], cond)
    assert y.shape == (2, 4, FRAMES, 8, 8) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.abs().max() > 0
    assert torch.equal(y, y_again)
    torch.testing.assert_close(y, torch.cat([y0, y1]), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("camera", VARIANTS[1:])
def test_per_sample_cameras_equal_separate_calls(tiny_models, camera):
    model = tiny_models[camera]
    x, t, ctx, fs = _inputs(2)
    both = model.camera_condition(_rel_c2w(2), K.expand(2, 3, 3), translation_noise=torch.randn(2, FRAMES, FRAMES, 3, 1))
    one = [C.CameraCondition(both.variant, 1, FRAMES,
                             None if both.pose_features is None else tuple(f[i:i + 1] for f in both.pose_features),
                             None if both.epipolar_masks is None else {k: m[i:i + 1] for k, m in both.epipolar_masks.items()},
                             None if both.motion_rt is None else both.motion_rt[i:i + 1]) for i in range(2)]
    with torch.no_grad():
        y = model.unet(x, t, ctx, fs, both)
        ys = [model.unet(x[i:i + 1], t[i:i + 1], ctx[i:i + 1], fs[i:i + 1], one[i]) for i in range(2)]
    torch.testing.assert_close(y, torch.cat(ys), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("camera", VARIANTS[1:])
def test_camera_changes_output_and_none_is_plain_dynamicrafter(tiny_models, camera):
    model, plain = tiny_models[camera], tiny_models["none"]
    x, t, ctx, fs = _inputs(2)
    with torch.no_grad():
        y_cam = model.unet(x, t, ctx, fs, _camera(model, camera))
        y_off = model.unet(x, t, ctx, fs, None)
        # the plain UNet with the shared (weight-rule) weights computes the same camera-free path
        plain_state = plain.unet.state_dict()
        shared = {k: v for k, v in model.unet.state_dict().items() if k in plain_state}
        if camera == "motionctrl":  # MotionCtrl retrains temporal attn2: use its weights in the plain model
            reference = UNet3D(plain.unet.params)
            reference.load_state_dict(shared)
        else:
            reference = plain.unet
            assert all(torch.equal(v, plain_state[k]) for k, v in shared.items())
        y_plain = reference(x, t, ctx, fs, None)
    torch.testing.assert_close(y_off, y_plain, atol=1e-5, rtol=1e-5)
    assert (y_cam - y_off).abs().max() > 1e-3


@pytest.mark.parametrize("camera", VARIANTS[1:])
def test_upstream_initialisation_makes_camera_a_no_op(camera):
    """Upstream zero-initialises pluker_projection / epipolar to_out / cc_projection (MotionCtrl:
    identity on x); with that init the camera branch must leave the output unchanged."""
    model, _ = _tiny(camera)
    with torch.no_grad():
        for block in model.unet.modules():
            if isinstance(block, CamI2VTemporalBlock):
                block.plucker_projection.weight.zero_(), block.plucker_projection.bias.zero_()
                block.epipolar.to_out[0].weight.zero_(), block.epipolar.to_out[0].bias.zero_()
            elif isinstance(block, CameraCtrlTemporalBlock):
                block.cc_projection.weight.zero_(), block.cc_projection.bias.zero_()
            elif isinstance(block, MotionCtrlTemporalBlock):
                dim = block.cc_projection.out_features
                block.cc_projection.weight.zero_(), block.cc_projection.bias.zero_()
                block.cc_projection.weight[:, :dim] = torch.eye(dim)
        x, t, ctx, fs = _inputs(2)
        y_cam = model.unet(x, t, ctx, fs, _camera(model, camera))
        y_off = model.unet(x, t, ctx, fs, None)
    torch.testing.assert_close(y_cam, y_off, atol=2e-5, rtol=1e-5)


def test_motionctrl_conditions_init_attn_too(tiny_models):
    model = tiny_models["motionctrl"]
    assert isinstance(model.unet.init_attn.transformer_blocks[0], MotionCtrlTemporalBlock)
    x, t, ctx, fs = _inputs(1)
    cam = _camera(model, "motionctrl")
    proj = model.unet.init_attn.transformer_blocks[0].cc_projection
    with torch.no_grad():
        before = model.unet(x, t, ctx, fs, cam)
        saved = proj.weight.clone()
        proj.weight[:, -12:] += 0.5
        after = model.unet(x, t, ctx, fs, cam)
        proj.weight.copy_(saved)
    assert (before - after).abs().max() > 1e-4


def test_camera_blocks_per_variant_on_full_presets():
    counts = {}
    for name in ("cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256"):
        unet = build_meta(name, parts=("unet",)).unet
        kinds = [type(m).__name__ for m in unet.modules()
                 if isinstance(m, (CamI2VTemporalBlock, CameraCtrlTemporalBlock, MotionCtrlTemporalBlock))]
        counts[name] = (len(kinds), set(kinds))
    assert counts["cami2v-512"] == (16, {"CamI2VTemporalBlock"})
    assert counts["cami2v-256"] == (16, {"CamI2VTemporalBlock"})
    assert counts["cameractrl-256"] == (16, {"CameraCtrlTemporalBlock"})
    assert counts["motionctrl-256"] == (17, {"MotionCtrlTemporalBlock"})
    assert get_preset("cami2v-512").unet.epipolar.mask_levels == (8, 4, 2)  # none at 40x64: full attention


def test_epipolar_mask_restricts_attention():
    torch.manual_seed(0)
    block = CamI2VTemporalBlock(32, 2, 16, num_register_tokens=2).eval()
    tt = TemporalTransformer(32, 2, 16, block)
    x = torch.randn(3, 32, 2, 2)  # B=1, T=3, 2x2
    pose = torch.randn(1, 4, 3, 32)
    L = 3 * 4
    only_registers = torch.zeros(1, 1, L, 2 + L, dtype=torch.bool)
    only_registers[..., :2] = True
    everything = torch.ones(1, 1, L, 2 + L, dtype=torch.bool)
    with torch.no_grad():
        y_none = tt(x, 3, LevelCamera(pose=pose, mask=None))
        y_all = tt(x, 3, LevelCamera(pose=pose, mask=everything))
        y_reg = tt(x, 3, LevelCamera(pose=pose, mask=only_registers))
        # registers only: the epipolar branch outputs to_out(mean of register values), the same for all tokens
        epi = block.epipolar(torch.randn(1, L, 32), only_registers)
    torch.testing.assert_close(y_none, y_all, atol=1e-6, rtol=0)
    assert (y_none - y_reg).abs().max() > 1e-4
    torch.testing.assert_close(epi, epi[:, :1].expand_as(epi), atol=1e-6, rtol=0)


def test_frame_context_split():
    unet = UNet3D(tiny_params("none", num_frames=FRAMES).unet)
    ctx = torch.arange(2 * (5 + 2 * FRAMES), dtype=torch.float32).view(2, -1, 1).expand(-1, -1, 32)
    framed = unet.frame_context(ctx, FRAMES)
    assert framed.shape == (2 * FRAMES, 5 + 2, 32)
    torch.testing.assert_close(framed[1, :5], ctx[0, :5])  # text repeated per frame
    torch.testing.assert_close(framed[FRAMES + 2, 5:], ctx[1, 5 + 4: 5 + 6])  # frame 2 of video 1
    shared = torch.zeros(1, 9, 32)  # any other length: the whole context repeated per frame
    assert unet.frame_context(shared, FRAMES).shape == (FRAMES, 9, 32)


def test_wrong_camera_variant_or_batch_is_rejected(tiny_models):
    x, t, ctx, fs = _inputs(2)
    cam = _camera(tiny_models["cameractrl"], "cameractrl")
    with pytest.raises(ValueError, match="cameractrl"):
        tiny_models["cami2v"].unet(x, t, ctx, fs, cam)
    cam3 = tiny_models["motionctrl"].camera_condition(_rel_c2w(3), K.expand(3, 3, 3))
    with pytest.raises(ValueError, match="batch"):
        tiny_models["motionctrl"].unet(x, t, ctx, fs, cam3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_without_autocast(dtype):
    model, _ = _tiny("cami2v")
    x, t, ctx, fs = _inputs(1)
    with torch.no_grad():
        ref = model.unet(x, t, ctx, fs, _camera(model, "cami2v"))
        model.to(dtype)
        cam = _camera(model, "cami2v")
        assert cam.pose_features[0].dtype == dtype and cam.epipolar_masks[2].dtype == torch.bool
        y = model.unet(x, t, ctx, fs, cam)
    assert y.dtype == torch.float32  # returned in the input's dtype
    err = (y - ref).abs().max() / ref.abs().max()
    assert err < 0.1, f"relative error {err:.3f} in {dtype}"


def test_compile_hook_keeps_results():
    model, _ = _tiny("cameractrl")
    x, t, ctx, fs = _inputs(1)
    cam = _camera(model, "cameractrl")
    with torch.no_grad():
        ref = model.unet(x, t, ctx, fs, cam)
        model.unet.compile_blocks(backend="eager")
        y = model.unet(x, t, ctx, fs, cam)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=0)


def test_default_fs_is_used_when_omitted(tiny_models):
    unet = tiny_models["none"].unet
    x, t, ctx, _ = _inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, ctx), unet(x, t, ctx, torch.tensor([unet.params.default_fs])))
        assert (unet(x, t, ctx) - unet(x, t, ctx, torch.tensor([9]))).abs().max() > 1e-5


# -- golden: the 512x320 CamI2V UNet (1.5 B parameters) --------------------------------------------


@pytest.fixture(scope="module")
def golden_512(golden_dir):
    """UNet + pose encoder of cami2v-512 with the weight rule, float32 on the CPU (~7 GB), and the
    golden camera condition computed once (as the sampler does per video)."""
    model = build_with_weight_rule("cami2v-512", parts=("unet", "pose_encoder"))
    inputs = torch.load(golden_dir / "cami2v512" / "unet_inputs.pt", weights_only=False)
    g = torch.load(golden_dir / "cami2v512" / "camera_inputs_and_geometry.pt", weights_only=False)
    noise = torch.randn(1, 16, 16, 3, 1, generator=torch.Generator().manual_seed(1234))  # upstream's draw
    cam = model.camera_condition(g["relative_c2w"], g["camera_intrinsics"][:, 0], translation_noise=noise)
    yield model, inputs, cam
    del model, cam


@pytest.mark.heavy
def test_golden_pose_encoder_features(golden_512, golden_dir):
    """The pose encoder's four feature maps, as the temporal blocks receive them."""
    _, _, cam = golden_512
    ref = torch.load(golden_dir / "cami2v512" / "pose_encoder_features_ch16.pt",
                     weights_only=False)["pose_encoder_features_ch16"]
    sizes = [(40, 64), (20, 32), (10, 16), (5, 8)]
    for f, r, (h, w), c in zip(cam.pose_features, ref, sizes, (320, 640, 1280, 1280)):
        assert tuple(f.shape) == (1, h * w, 16, c)
        f = f.view(1, h, w, 16, c).permute(0, 4, 3, 1, 2)[:, ::16]  # the fixture's (b c f h w)[:, ::16]
        torch.testing.assert_close(f, r, atol=1e-5 * float(r.abs().max()) + 1e-6, rtol=0)


@pytest.mark.heavy
def test_golden_unet_with_camera(golden_512, golden_dir):
    model, inputs, cam = golden_512
    assert set(cam.epipolar_masks) == {2, 4, 8}  # 20x32, 10x16, 5x8; 40x64 runs unmasked
    assert int(cam.epipolar_masks[8][..., 4:].sum()) == 82038  # the fixture's stride-64 count
    with torch.no_grad():
        y = model.unet(inputs["x"], inputs["timesteps"], inputs["context"], inputs["fs"], cam)
    ref = torch.load(golden_dir / "cami2v512" / "unet_output.pt", weights_only=False)["y"]
    assert y.shape == ref.shape == (1, 4, 16, 40, 64)
    err = float((y - ref).abs().max())
    assert err <= 1e-4 * float(ref.abs().max()), f"max abs error {err:.3g}"


@pytest.mark.heavy
def test_golden_unet_without_camera(golden_512, golden_dir):
    model, inputs, _ = golden_512
    with torch.no_grad():
        y = model.unet(inputs["x"], inputs["timesteps"], inputs["context"], inputs["fs"], None)
    ref = torch.load(golden_dir / "cami2v512" / "unet_output_no_camera.pt", weights_only=False)["y"]
    err = float((y - ref).abs().max())
    assert err <= 1e-4 * float(ref.abs().max()), f"max abs error {err:.3g}"
