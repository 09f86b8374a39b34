"""The shared flow toolbox: known translations are recovered, the warp brings b onto a, and
the forward-backward mask rejects occluded pixels."""

import cv2
import numpy as np
import pytest

from core import flow as flowlib
from core.errors import InputError


def _texture(h=160, w=256, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)


def _shift(img, dx, dy):
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def test_dis_recovers_a_known_translation():
    a = _texture()
    b = _shift(a, 3.0, -2.0)  # b(x) = a(x - (3, -2)): a's pixel x sits at x + (3, -2) in b
    f = flowlib.dis_flow(a, b)
    assert f.shape == (160, 256, 2) and f.dtype == np.float32
    inner = f[20:-20, 20:-20].reshape(-1, 2)
    assert np.median(inner[:, 0]) == pytest.approx(3.0, abs=0.1)
    assert np.median(inner[:, 1]) == pytest.approx(-2.0, abs=0.1)


def test_warp_brings_b_onto_a():
    a = _texture()
    b = _shift(a, 4.0, 0.0)
    pair = flowlib.flow_pair(a, b)
    back = flowlib.warp(b, pair.forward)
    err = np.abs(back.astype(np.float32) - a.astype(np.float32))[pair.valid]
    assert err.mean() < 3.0
    assert pair.valid_fraction > 0.9


def test_warp_with_exact_flow_matches_remap():
    a = _texture()
    flow = np.zeros(a.shape[:2] + (2,), np.float32)
    flow[..., 0] = 1.5
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
    ref = cv2.remap(a, xs + 1.5, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(flowlib.warp(a, flow), ref)


def test_consistency_mask_rejects_disagreeing_and_outside_pixels():
    h, w = 40, 60
    fwd = np.zeros((h, w, 2), np.float32)
    bwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 2.0
    bwd[..., 0] = -2.0
    m = flowlib.consistency_mask(fwd, bwd)
    assert m[:, : w - 3].all()  # consistent and inside
    assert not m[:, w - 2:].any()  # x + 2 leaves the frame
    bwd[10:20, 10:20, 0] = 5.0  # an occluder: the backward flow disagrees there
    m2 = flowlib.consistency_mask(fwd, bwd)
    assert not m2[10:20, 8:18].any()


def test_estimators_by_name_and_clear_errors():
    a = _texture(64, 64)
    assert "dis" in flowlib.estimators()
    assert flowlib.estimate_flow(a, a, "dis-fast").shape == (64, 64, 2)
    with pytest.raises(InputError, match="Unknown optical-flow method"):
        flowlib.estimate_flow(a, a, "nope")
    with pytest.raises(InputError, match="one size"):
        flowlib.dis_flow(a, _texture(32, 32))
