"""Training-free latent propagation: golden outputs and closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.upscale_a_video.propagation import consistency_mask, flow_warp, propagate_latents


@pytest.fixture(scope="module")
def golden(golden_dir):
    d = golden_dir / "upscale_a_video"
    return lambda name: torch.from_numpy(np.load(d / f"{name}.npy"))


def test_golden_pipeline_arguments(golden):
    x = golden("prop_in_x")
    out = propagate_latents(x, golden("prop_in_flows_forward"), golden("prop_in_flows_backward"),
                            interpolation="nearest", fuse_scale=0.5, alpha1=0.001, alpha2=0.05)
    torch.testing.assert_close(out, golden("prop_out_pipeline_args"), rtol=1e-5, atol=1e-5)
    # the defaults are the pipeline's arguments
    torch.testing.assert_close(propagate_latents(x, golden("prop_in_flows_forward"), golden("prop_in_flows_backward")),
                               out, rtol=0, atol=0)


def test_golden_bilinear_with_flows_at_twice_the_latent_size(golden):
    out = propagate_latents(golden("prop_in_x"), golden("prop_in_flows_forward_64"),
                            golden("prop_in_flows_backward_64"), interpolation="bilinear")
    torch.testing.assert_close(out, golden("prop_out_bilinear_flows64"), rtol=1e-5, atol=1e-5)


def _x(t=4, seed=0):
    return torch.randn(1, 2, t, 6, 7, generator=torch.Generator().manual_seed(seed))


def test_zero_flow_is_a_two_pass_running_average():
    x = _x()
    zeros = torch.zeros(1, 2, 3, 6, 7)
    out = propagate_latents(x, zeros, zeros, fuse_scale=0.5)
    b = [None] * 4
    b[3] = x[:, :, 3]
    for i in (2, 1, 0):
        b[i] = 0.5 * b[i + 1] + 0.5 * x[:, :, i]
    f = [b[0]]
    for i in (1, 2, 3):
        f.append(0.5 * f[i - 1] + 0.5 * b[i])
    torch.testing.assert_close(out, torch.stack(f, dim=2))


def test_inconsistent_flows_leave_frames_untouched():
    x = _x()
    shift = torch.zeros(1, 2, 3, 6, 7)
    shift[:, 0] = 2.0
    # forward and backward both say "+2 px": they do not cancel, so every pixel is masked out
    out = propagate_latents(x, shift, shift)
    torch.testing.assert_close(out, x, rtol=0, atol=0)


def test_translation_is_followed_with_copy_mode():
    """Content moving 1 px right per frame, exact flows, fuse_scale=1: each frame becomes the
    warped previous one where visible, so interior columns are unchanged."""
    base = torch.randn(1, 1, 1, 5, 12, generator=torch.Generator().manual_seed(3))
    x = torch.cat([torch.roll(base, i, dims=-1) for i in range(3)], dim=2)
    ff = torch.zeros(1, 2, 2, 5, 12)
    ff[:, 0] = 1.0  # frame i pixel p appears at p+1 in frame i+1
    fb = -ff
    out = propagate_latents(x, ff, fb, interpolation="bilinear", fuse_scale=1.0)
    torch.testing.assert_close(out[..., 2:-2], x[..., 2:-2], rtol=1e-5, atol=1e-5)


def test_flows_are_resized_and_scaled_to_the_latent_grid():
    x = _x()
    small = torch.zeros(1, 2, 3, 6, 7)
    small[:, 0] = 1.0
    small[:, 1] = -1.0
    big = torch.zeros(1, 2, 3, 12, 14)
    big[:, 0] = 2.0
    big[:, 1] = -2.0
    for interp in ("nearest", "bilinear"):
        torch.testing.assert_close(propagate_latents(x, big, -big, interp), propagate_latents(x, small, -small, interp))


def test_flow_warp_and_mask():
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    right = torch.zeros(1, 2, 3, 4)
    right[:, 0] = 1.0
    warped = flow_warp(img, right, "nearest")
    torch.testing.assert_close(warped[..., :3], img[..., 1:])
    assert torch.equal(warped[..., 3], torch.zeros(1, 1, 3))  # sampled outside: zero padding
    assert consistency_mask(right, -right, 0.001, 0.05)[..., :3].eq(1).all()
    assert consistency_mask(right, right, 0.001, 0.05).eq(0).all()


def test_half_precision_latents_are_propagated_in_float32(golden):
    x = golden("prop_in_x")
    ff, fb = golden("prop_in_flows_forward"), golden("prop_in_flows_backward")
    out = propagate_latents(x.half(), ff.half(), fb.half())
    assert out.dtype == torch.float16
    ref = propagate_latents(x.half().float(), ff.half().float(), fb.half().float())
    torch.testing.assert_close(out.float(), ref, rtol=1e-3, atol=1e-3)


def test_argument_checks():
    x = _x()
    with pytest.raises(ValueError, match="interpolation"):
        propagate_latents(x, torch.zeros(1, 2, 3, 6, 7), torch.zeros(1, 2, 3, 6, 7), interpolation="bicubic")
    with pytest.raises(ValueError, match="flows_backward"):
        propagate_latents(x, torch.zeros(1, 2, 3, 6, 7), torch.zeros(1, 2, 2, 6, 7))
    single = _x(t=1)
    torch.testing.assert_close(propagate_latents(single, torch.zeros(1, 2, 0, 6, 7), torch.zeros(1, 2, 0, 6, 7)),
                               single)
