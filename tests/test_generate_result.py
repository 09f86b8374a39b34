"""The typed generator -> service contract (GenerateResult) on its own."""

from __future__ import annotations

import numpy as np
import pytest

from core.clip import Clip
from core.generators.base import GenerateResult, PeakMemory, resized_box_to_photo


def _clip() -> Clip:
    return Clip(np.zeros((2, 8, 8, 3), np.uint8), 10.0)


def test_record_carries_the_typed_fields_under_fixed_names():
    r = GenerateResult(_clip(), {"model": "x", "timings_s": {"old": 1.0}}, crop_box=(1.0, 2, 7, 8),
                       timings={"sampling": 2.5}, peak_memory=PeakMemory("cuda:0", 123), params={"steps": 3})
    assert r.crop_box == (1, 2, 7, 8) and all(isinstance(v, int) for v in r.crop_box)
    rec = r.record()
    assert rec["crop_box"] == [1, 2, 7, 8] and rec["timings"] == {"sampling": 2.5}
    assert rec["peak_memory"] == {"device": "cuda:0", "bytes": 123} and rec["params"] == {"steps": 3}
    assert rec["model"] == "x"  # the free-form details stay
    assert GenerateResult(_clip()).record()["crop_box"] is None


@pytest.mark.parametrize("box", [(0, 0, 0, 5), (4, 0, 2, 5), (0, 0, 5)])
def test_bad_crop_box_is_refused(box):
    with pytest.raises(ValueError, match="crop_box"):
        GenerateResult(_clip(), crop_box=box)


def test_resized_box_to_photo():
    # 140x90 photo resized to 99x64 (cover for 64x64), centre crop [17, 0, 81, 64] of the resized image
    assert resized_box_to_photo((17, 0, 81, 64), (99, 64), (140, 90)) == (24, 0, 115, 90)
    # clipped to the photo
    assert resized_box_to_photo((-2, -1, 101, 65), (99, 64), (140, 90)) == (0, 0, 140, 90)
