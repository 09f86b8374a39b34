"""OpenCV stages, chain parsing, chain order and shared-prefix reuse."""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import pytest

from core.clip import Clip
from core.errors import Cancelled, InputError
from core.params import ParamSpec, resolve_params
from core.postprocess import chains as C
from core.postprocess.base import Stage
from core.postprocess.classical import LanczosUpscale, NLMeansDenoise, mirrored_window
from core.progress import Progress


def _clean(t: int = 5, h: int = 32, w: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([
        np.stack([100 + 50 * np.sin((xx + i) / 6.0), 120 + 40 * np.cos(yy / 5.0), np.full_like(xx, 90.0)], -1)
        for i in range(t)
    ])


def _noisy_clip(t: int = 5, h: int = 32, w: int = 48, sigma: float = 15.0, seed: int = 0) -> tuple[Clip, np.ndarray]:
    clean = _clean(t, h, w)
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return Clip(np.clip(noisy, 0, 255).astype(np.uint8), 8.0), clean


# --------------------------------------------------------------------------- stages


def test_mirrored_window_reflects_without_repeating_the_edge():
    assert [mirrored_window(t, 6, 5) for t in range(6)] == [
        [2, 1, 0, 1, 2], [1, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 4], [3, 4, 5, 4, 3],
    ]
    assert mirrored_window(0, 1, 5) == [0] * 5
    assert mirrored_window(1, 2, 3) == [0, 1, 0]


def test_nlmeans_reduces_noise_on_every_frame_and_keeps_shape():
    clip, clean = _noisy_clip()
    stage = NLMeansDenoise()
    params = resolve_params(stage.param_specs(), {"h": 12, "h_color": 12})
    seen = []
    out = stage.process(clip, params, Progress(lambda f, m: seen.append(f)))
    assert out.frames.shape == clip.frames.shape and out.frames.dtype == np.uint8 and out.fps == clip.fps
    err_in = ((clip.frames - clean) ** 2).mean(axis=(1, 2, 3))
    err_out = ((out.frames - clean) ** 2).mean(axis=(1, 2, 3))
    assert (err_out < 0.5 * err_in).all()  # end frames too: the mirrored window covers them
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_nlmeans_uses_the_mirrored_temporal_window(monkeypatch):
    clip, _ = _noisy_clip(t=4, h=16, w=16)
    calls = []
    real = cv2.fastNlMeansDenoisingColoredMulti

    def spy(imgs, index, window, *args):
        calls.append(([next(i for i in range(4) if np.array_equal(im, clip.frames[i, ..., ::-1])) for im in imgs],
                      index, window))
        return real(imgs, index, window, *args)

    monkeypatch.setattr(cv2, "fastNlMeansDenoisingColoredMulti", spy)
    stage = NLMeansDenoise()
    stage.process(clip, resolve_params(stage.param_specs(), {"temporal_window": 5}), Progress())
    assert calls == [([2, 1, 0, 1, 2], 2, 5), ([1, 0, 1, 2, 3], 2, 5), ([0, 1, 2, 3, 2], 2, 5), ([1, 2, 3, 2, 1], 2, 5)]


def test_lanczos_scales_and_matches_opencv():
    clip, _ = _noisy_clip(t=2, h=10, w=14)
    stage = LanczosUpscale()
    for scale in (2, 4):
        out = stage.process(clip, {"scale": scale}, Progress())
        assert out.frames.shape == (2, 10 * scale, 14 * scale, 3) and out.frames.dtype == np.uint8
        ref = cv2.resize(clip.frames[1], (14 * scale, 10 * scale), interpolation=cv2.INTER_LANCZOS4)
        assert np.array_equal(out.frames[1], ref)
    # Lanczos overshoots at hard edges; the result is clipped, not wrapped.
    edge = np.zeros((1, 8, 8, 3), np.uint8)
    edge[:, :, 4:] = 255
    up = stage.process(Clip(edge, 8.0), {"scale": 4}, Progress()).frames
    assert up[0, :, -1].min() == 255 and up[0, :, 0].max() == 0


def test_stage_params_are_validated():
    with pytest.raises(InputError, match="Scale factor"):
        C.run_chain(_noisy_clip(t=2)[0], ["lanczos"], {"lanczos": {"scale": 3}})
    with pytest.raises(InputError, match="Unknown parameter 'strength'"):
        C.run_chain(_noisy_clip(t=2)[0], ["nlmeans"], {"nlmeans": {"strength": 3}})
    with pytest.raises(InputError, match="unknown stage 'nlmean'"):
        C.run_chain(_noisy_clip(t=2)[0], ["lanczos"], {"nlmean": {"h": 3}})


# --------------------------------------------------------------------------- chain parsing


def test_parse_chain_roles_names_and_none():
    assert C.parse_chain("none") == () and C.parse_chain("") == ()
    assert C.parse_chain("denoise+upscale") == ("nlmeans", "lanczos")
    assert C.parse_chain(" Upscale + Denoise ") == ("lanczos", "nlmeans")
    assert C.parse_chain("lanczos+nlmeans+lanczos") == ("lanczos", "nlmeans", "lanczos")
    assert C.parse_chain("denoise", roles={"denoise": "lanczos"}) == ("lanczos",)


def test_parse_chain_errors_name_the_bad_word():
    with pytest.raises(InputError, match="'fastdvdnet'"):
        C.parse_chain("fastdvdnet+lanczos")  # not registered in this process
    with pytest.raises(InputError, match="'sharpen'"):
        C.parse_chain("denoise+sharpen")
    with pytest.raises(InputError, match="none"):
        C.parse_chain("none+upscale")
    with pytest.raises(InputError, match="'uav'"):
        C.parse_chain("upscale", roles={"upscale": "uav"})


# --------------------------------------------------------------------------- running chains


def test_order_matters_with_expected_sizes():
    clip, _ = _noisy_clip(t=3, h=16, w=24)
    res = C.run_chains(clip, ["denoise+upscale", "upscale+denoise"], {"lanczos": {"scale": 2}})
    du, ud = res["denoise+upscale"], res["upscale+denoise"]
    assert du.clip.frames.shape == ud.clip.frames.shape == (3, 32, 48, 3)
    assert du.stages == ("nlmeans", "lanczos") and ud.stages == ("lanczos", "nlmeans")
    assert np.abs(du.clip.frames.astype(int) - ud.clip.frames).mean() > 0.5
    rec = du.records
    assert [r.stage for r in rec] == ["nlmeans", "lanczos"]
    assert rec[0].input_size == (24, 16) and rec[0].output_size == (24, 16) and rec[1].output_size == (48, 32)
    assert rec[1].params == {"scale": 2} and rec[0].params["h"] == 5.0 and rec[0].seconds > 0
    assert rec[1].to_dict()["output_size"] == [48, 32]


class _Spy(Stage):
    """Counts calls and tags frames so tests can see which input each stage got."""

    def __init__(self, name: str, role: str, log: list):
        self.name, self.role, self.log = name, role, log

    def param_specs(self) -> Sequence[ParamSpec]:
        return (ParamSpec("amount", "int", 1, minimum=0, maximum=10),)

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        self.log.append((self.name, clip.frames.shape[1:3]))
        progress(1.0, "done")
        if self.role == "upscale":
            return clip.with_frames(np.repeat(np.repeat(clip.frames, 2, axis=1), 2, axis=2))
        return clip.with_frames(np.minimum(clip.frames.astype(np.int32) + params["amount"], 255).astype(np.uint8))


def test_shared_prefixes_run_once():
    log: list = []
    spies = {"spyden": _Spy("spyden", "denoise", log), "spyup": _Spy("spyup", "upscale", log)}
    roles = {"denoise": "spyden", "upscale": "spyup"}
    clip = Clip(np.zeros((2, 4, 6, 3), np.uint8), 8.0)
    done = []
    res = C.run_chains(clip, list(C.STANDARD_CHAINS), roles=roles, stages_by_name=spies, on_result=done.append)
    # 4 stage runs instead of 6: "denoise" and "upscale" are each computed once and reused.
    assert log == [("spyden", (4, 6)), ("spyup", (4, 6)), ("spyup", (4, 6)), ("spyden", (8, 12))]
    assert [r.name for r in done] == list(C.STANDARD_CHAINS) == list(res)
    assert res["none"].clip is clip and res["none"].records == []
    assert [r.reused for r in res["denoise+upscale"].records] == [True, False]
    assert [r.reused for r in res["upscale+denoise"].records] == [True, False]
    assert res["denoise+upscale"].clip.frames.shape == (2, 8, 12, 3)
    assert int(res["denoise+upscale"].clip.frames.max()) == 1 and res["denoise"].clip.frames.shape == (2, 4, 6, 3)


def test_registry_is_a_plain_function_and_dict(monkeypatch):
    monkeypatch.setattr(C, "STAGES", dict(C.STAGES))
    log: list = []
    C.register_stage("spyden", lambda: _Spy("spyden", "denoise", log))
    assert C.parse_chain("spyden+lanczos") == ("spyden", "lanczos")
    out = C.run_chain(Clip(np.zeros((1, 4, 4, 3), np.uint8), 8.0), ("spyden",), {"spyden": {"amount": 3}})
    assert int(out.clip.frames.max()) == 3 and log == [("spyden", (4, 4))]
    with pytest.raises(ValueError, match="already registered"):
        C.register_stage("spyden", lambda: _Spy("spyden", "denoise", log))
    with pytest.raises(ValueError, match="reserved"):
        C.register_stage("denoise", lambda: _Spy("x", "denoise", log))


def test_cancel_between_frames_stops_the_chain():
    cancel = threading.Event()
    seen = []

    def fn(frac, msg):
        seen.append(msg)
        if "nlmeans frame 2" in msg:
            cancel.set()

    clip, _ = _noisy_clip(t=5, h=16, w=16)
    with pytest.raises(Cancelled):
        C.run_chains(clip, ["denoise+upscale"], progress=Progress(fn, cancel))
    assert not any("lanczos" in m for m in seen[1:])
