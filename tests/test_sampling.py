"""Schedules, the guided denoiser adapter and DDIM, including a replay of the recorded CamI2V run."""

from __future__ import annotations

import math

import pytest
import torch

from core.sampling import (Conditioning, Denoised, GeneratorNoise, GuidedDenoiser, Guidance, RecordedNoise,
                           ddim_timesteps, dynamic_rescale_table, make_schedule, rescale_guidance, sample_ddim,
                           to_eps_x0)

V512 = dict(zero_terminal_snr=True, parameterization="v", dynamic_rescale=True)


# -- schedules -------------------------------------------------------------------------------


def test_zero_terminal_snr_schedule():
    plain = make_schedule()
    ztsnr = make_schedule(**V512)
    assert ztsnr.alphas_cumprod.dtype == torch.float64
    assert ztsnr.alphas_cumprod[-1] == 0.0
    assert plain.alphas_cumprod[-1] > 0.004
    assert math.isclose(float(ztsnr.alphas_cumprod[0]), float(plain.alphas_cumprod[0]), rel_tol=1e-12)
    assert torch.all(ztsnr.alphas_cumprod[1:] < ztsnr.alphas_cumprod[:-1])
    with pytest.raises(ValueError):
        make_schedule(zero_terminal_snr=True, parameterization="eps")


def test_schedule_matches_recorded_buffers(golden_dir):
    buffers = torch.load(golden_dir / "cami2v512" / "buffers.pt", weights_only=False)["buffers"]
    s = make_schedule(**V512)
    for name, ours in [("betas", s.betas), ("alphas_cumprod", s.alphas_cumprod),
                       ("sqrt_alphas_cumprod", s.alphas_cumprod.sqrt()),
                       ("sqrt_one_minus_alphas_cumprod", (1 - s.alphas_cumprod).sqrt()),
                       ("scale_arr", s.scale_table)]:
        torch.testing.assert_close(ours.float(), buffers[name], rtol=1e-6, atol=1e-7, msg=name)


def test_dynamic_rescale_table():
    s = dynamic_rescale_table()
    assert s.shape == (1400,)
    assert s[0] == 1.0 and math.isclose(float(s[399]), 0.7) and torch.all(s[400:] == 0.7)
    assert math.isclose(float(s[200]), 1 - 0.3 * 200 / 399, rel_tol=1e-12)


def test_trailing_timesteps():
    assert ddim_timesteps(25).tolist() == list(range(39, 1000, 40))
    assert ddim_timesteps(2).tolist() == [499, 999]
    assert ddim_timesteps(50).tolist()[:2] == [19, 39] and ddim_timesteps(50)[-1] == 999
    assert ddim_timesteps(1).tolist() == [999]
    assert ddim_timesteps(4, spacing="uniform").tolist() == [1, 251, 501, 751]
    with pytest.raises(ValueError):
        ddim_timesteps(0)
    with pytest.raises(ValueError):
        ddim_timesteps(10, spacing="karras")


# -- conversions and guidance ----------------------------------------------------------------


@pytest.mark.parametrize("param", ["eps", "v"])
def test_eps_x0_conversion_round_trip(param):
    s = make_schedule(parameterization=param)
    x0, eps = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    t = 321
    a = float(s.alphas_cumprod[t])
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = eps if param == "eps" else math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    d = to_eps_x0(out, x_t, s, t)
    torch.testing.assert_close(d.eps, eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d.x0, x0, rtol=1e-5, atol=1e-5)


class FakeUNet:
    """Elementwise stand-in: the output depends on x, the context mean, fs and the camera."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timesteps, context, fs, camera):
        self.calls.append((x.shape[0], None if timesteps is None else timesteps.tolist(), camera))
        c = context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        cam = 0.0 if camera is None else float(camera)
        return torch.sin(x[:, :4] * (1 + c)) + 0.1 * x[:, 4:] + 0.01 * fs.view(-1, 1, 1, 1, 1) + cam


def _branches(camera=None):
    concat = torch.randn(1, 4, 3, 4, 4)
    fs = torch.tensor([7])
    cond = Conditioning(torch.full((1, 6, 8), 0.5), concat, fs, camera)
    uncond = Conditioning(torch.full((1, 6, 8), -0.2), concat, fs, camera)
    return cond, uncond


def test_cfg_formula_batched_equals_unbatched():
    s = make_schedule(**V512)
    cond, uncond = _branches()
    x = torch.randn(1, 4, 3, 4, 4)
    unet = FakeUNet()
    batched = GuidedDenoiser(unet, s, cond, uncond, Guidance(scale=5.5))
    out_b = batched.model_output(x, 499)
    assert [c[0] for c in unet.calls] == [2] and unet.calls[0][1] == [499, 499]
    unbatched = GuidedDenoiser(unet, s, cond, uncond, Guidance(scale=5.5, batched=False))
    out_u = unbatched.model_output(x, 499)
    assert [c[0] for c in unet.calls[1:]] == [1, 1]
    torch.testing.assert_close(out_b, out_u)
    c = FakeUNet()(torch.cat([x, cond.concat], 1), None, cond.context, cond.fs, None)
    u = FakeUNet()(torch.cat([x, cond.concat], 1), None, uncond.context, cond.fs, None)
    torch.testing.assert_close(out_b, u + 5.5 * (c - u))
    # guidance off: one conditional call, no uncond needed
    plain = GuidedDenoiser(FakeUNet(), s, cond, None, Guidance(scale=1.0, rescale=0.7))
    torch.testing.assert_close(plain.model_output(x, 499), c)
    with pytest.raises(ValueError):
        GuidedDenoiser(FakeUNet(), s, cond, None, Guidance(scale=2.0))


def test_guidance_rescale():
    guided = torch.randn(2, 4, 3, 4, 4) * 3
    cond = torch.randn(2, 4, 3, 4, 4)
    out = rescale_guidance(guided, cond, 1.0)
    torch.testing.assert_close(out.std(dim=(1, 2, 3, 4)), cond.std(dim=(1, 2, 3, 4)))
    torch.testing.assert_close(rescale_guidance(guided, cond, 0.0), guided)
    mixed = rescale_guidance(guided, cond, 0.7)
    torch.testing.assert_close(mixed, 0.7 * out + 0.3 * guided)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_camera_cfg_third_branch(schedule):
    s = make_schedule(**V512)
    cond, uncond = _branches(camera=0.3)
    x = torch.randn(1, 4, 3, 4, 4)
    unet = FakeUNet()
    den = GuidedDenoiser(unet, s, cond, uncond, Guidance(scale=3.0, camera_scale=2.0, camera_schedule=schedule))
    out = den.model_output(x, 249)
    assert [(n, cam) for n, _, cam in unet.calls] == [(2, 0.3), (1, None)]
    ref = FakeUNet()
    xin = torch.cat([x, cond.concat], 1)
    c, u = ref(xin, None, cond.context, cond.fs, 0.3), ref(xin, None, uncond.context, cond.fs, 0.3)
    c_nocam = ref(xin, None, cond.context, cond.fs, None)
    w = 1.0 if schedule == "constant" else math.cos((1 - 249 / 999) * math.pi / 2)
    torch.testing.assert_close(out, u + 3.0 * (c - u) + 1.0 * w * (c - c_nocam))
    # without a camera condition camera CFG is a no-op (no third call)
    unet2 = FakeUNet()
    cond0, uncond0 = _branches(camera=None)
    GuidedDenoiser(unet2, s, cond0, uncond0, Guidance(scale=3.0, camera_scale=2.0)).model_output(x, 249)
    assert len(unet2.calls) == 1


# -- DDIM ------------------------------------------------------------------------------------


def test_ddim_with_oracle_denoiser_follows_the_deterministic_path():
    """η = 0 with a denoiser that knows x0: x stays on √ā·x0 + √(1−ā)·ε for a fixed ε."""
    s = make_schedule()
    x0 = torch.randn(1, 4, 2, 3, 3)
    x_T = torch.randn(1, 4, 2, 3, 3)
    steps = ddim_timesteps(10)
    aT = float(s.alphas_cumprod[int(steps[-1])])
    eps_true = (x_T - math.sqrt(aT) * x0) / math.sqrt(1 - aT)

    def oracle(x, t):
        a = float(s.alphas_cumprod[t])
        return Denoised(None, (x - math.sqrt(a) * x0) / math.sqrt(1 - a), x0)

    seen = []
    out = sample_ddim(oracle, x_T, s, steps, eta=0.0, generator=torch.Generator().manual_seed(0),
                      callback=lambda i, n, x, xx0: seen.append((i, n)))
    a0 = float(s.alphas_cumprod[0])
    torch.testing.assert_close(out, math.sqrt(a0) * x0 + math.sqrt(1 - a0) * eps_true, rtol=1e-4, atol=1e-4)
    assert seen == [(i, 10) for i in range(10)]


def test_ddim_seeded_determinism_and_noise_sources():
    s = make_schedule(**V512)
    den = lambda x, t: to_eps_x0(torch.tanh(x), x, s, t)  # noqa: E731
    x_T = torch.randn(1, 4, 2, 3, 3)
    a = sample_ddim(den, x_T, s, ddim_timesteps(4), eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_ddim(den, x_T, s, ddim_timesteps(4), eta=1.0, noise=GeneratorNoise(torch.Generator().manual_seed(3)))
    c = sample_ddim(den, x_T, s, ddim_timesteps(4), eta=1.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3
    rec = RecordedNoise([torch.zeros(1, 4, 2, 3, 3)] * 4)
    sample_ddim(den, x_T, s, ddim_timesteps(4), noise=rec)
    assert rec.used == 4 and rec.remaining == 0
    with pytest.raises(RuntimeError, match="exhausted"):
        rec((1,), torch.device("cpu"))
    with pytest.raises(RuntimeError, match="shape"):
        RecordedNoise([torch.zeros(2)])((3,), torch.device("cpu"))


def test_replay_of_recorded_cami2v_sampling(golden_dir):
    """The recorded UNet outputs fed through our guidance + DDIM reproduce every recorded step
    (v-prediction, ZTSNR, CFG 5.5, rescale 0.7, dynamic x0 rescale, η = 1, recorded noise)."""
    g = golden_dir / "cami2v512"
    inter = torch.load(g / "sampling_intermediates.pt", weights_only=False)
    draws = [d for _, d in torch.load(g / "sampling_random_draws.pt", weights_only=False)["random_draws_in_order"]]
    outputs = inter["apply_model_outputs_in_order"]  # per step: cond, uncond

    def replay(x, timesteps, context, fs, camera):
        i = len(calls)
        calls.append(timesteps.tolist())
        return torch.cat([outputs[2 * i], outputs[2 * i + 1]])

    calls: list = []
    s = make_schedule(**V512)
    concat = torch.zeros(1, 4, 16, 40, 64)
    cond = Conditioning(torch.zeros(1, 333, 8), concat, torch.tensor([14]))
    uncond = Conditioning(torch.ones(1, 333, 8), concat, torch.tensor([14]))
    den = GuidedDenoiser(replay, s, cond, uncond, Guidance(scale=5.5, rescale=0.7))
    steps: list = []
    noise = RecordedNoise(draws[18:])
    torch.testing.assert_close(draws[17], inter["ddim_steps"][0]["x_in"])
    sample_ddim(den, draws[17], s, ddim_timesteps(2), eta=1.0, noise=noise,
                callback=lambda i, n, x, x0: steps.append((x, x0)))
    assert calls == [[999, 999], [499, 499]] and noise.remaining == 0
    for (x, x0), ref in zip(steps, inter["ddim_steps"]):
        torch.testing.assert_close(x, ref["x_prev"], rtol=1e-5, atol=2e-6)
        torch.testing.assert_close(x0, ref["pred_x0"], rtol=1e-5, atol=2e-6)


def test_ddim_x0_hook_final_alpha_and_deterministic_runs_draw_nothing():
    s = make_schedule()
    den = lambda x, t: to_eps_x0(torch.tanh(x), x, s, t)  # noqa: E731
    x_T = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    steps = ddim_timesteps(4, spacing="uniform")
    state = torch.get_rng_state()
    plain = sample_ddim(den, x_T, s, steps, eta=0.0)
    assert torch.equal(torch.get_rng_state(), state)  # eta = 0 without a stream: nothing drawn
    seeded = sample_ddim(den, x_T, s, steps, eta=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, seeded, rtol=0, atol=0)
    hooked, used = [], []
    out = sample_ddim(den, x_T, s, steps, eta=0.0, x0_hook=lambda i, x0: hooked.append(i) or torch.zeros_like(x0),
                      callback=lambda i, n, x, x0: used.append(float(x0.abs().max())))
    assert hooked == [0, 1, 2, 3] and used == [0.0] * 4
    # with x0 = 0 every step keeps only the eps direction: the last one scales by sqrt(1 - final alpha)
    ones = sample_ddim(den, x_T, s, steps, eta=0.0, x0_hook=lambda i, x0: torch.zeros_like(x0), final_alpha_bar=1.0)
    assert ones.abs().max() == 0 and out.abs().max() > 0
    with pytest.raises(ValueError, match="noise draw"):
        from core.sampling import ddim_update
        ddim_update(x_T, x_T, 0.5, 0.9, eta=1.0)


def test_ddim_update_precisions():
    """float32 rounds the coefficients as upstream LVDM does, float64 rounds them once; both
    are the same update to float rounding."""
    from core.sampling import ddim_update

    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(3, 50, generator=g), torch.randn(3, 50, generator=g)
    a_t, a_p = 0.123456789, 0.345678912
    exact = (math.sqrt(a_p) * x0.double() + math.sqrt(1 - a_p) * eps.double())
    f64 = ddim_update(x0, eps, a_t, a_p, precision=torch.float64)
    f32 = ddim_update(x0, eps, a_t, a_p)
    assert torch.equal(f64, float(math.sqrt(a_p)) * x0 + float(math.sqrt(1 - a_p)) * eps)
    torch.testing.assert_close(f32.double(), exact, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="precision"):
        ddim_update(x0, eps, a_t, a_p, precision=torch.float16)


def test_x0_prediction_round_trip():
    s = make_schedule()
    s = type(s)(s.betas, s.alphas_cumprod, "x0")
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    a = s.alpha_bar(300)
    d = to_eps_x0(x0, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, s, 300)
    assert d.x0 is x0
    torch.testing.assert_close(d.eps, eps, rtol=1e-5, atol=1e-5)
