"""Difference heat maps between chains (core.compare) and the players' HTML (size cap, one clock)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core import compare
from core.clip import Clip
from core.errors import InputError
from core.video import read_video, write_mp4
from ui.players import MAX_UPSCALE, Player, players_html


def test_difference_at_the_smaller_size_with_a_fixed_scale():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, (3, 32, 48, 3), dtype=np.uint8)
    b = a.copy()
    b[1, :16] += 24  # one frame differs by 24 grey levels in its top half
    big = np.stack([cv2.resize(f, (96, 64), interpolation=cv2.INTER_NEAREST) for f in b])
    d = compare.difference(a, big)
    assert d.size == (48, 32) and d.heat.shape == (3, 32, 48, 3)
    assert d.mean_abs[0] == pytest.approx(0, abs=0.01) and d.mean_abs[1] == pytest.approx(12, abs=0.01)
    # the colour scale is fixed: 24 of HEAT_MAX 48 maps to the middle of INFERNO, 0 to black
    mid = cv2.applyColorMap(np.array([[127]], np.uint8), cv2.COLORMAP_INFERNO)[0, 0, ::-1]
    assert np.abs(d.heat[1, 4, 4].astype(int) - mid).max() <= 3
    assert d.heat[1, 28, 4].max() < 10 and d.heat[0].max() < 10
    with pytest.raises(InputError):
        compare.difference(a[0], b)


def test_difference_video(tmp_path):
    a = np.full((4, 32, 48, 3), 100, np.uint8)
    write_mp4(Clip(a, 8.0), tmp_path / "a.mp4")
    write_mp4(Clip(a + 40, 8.0), tmp_path / "b.mp4")
    d = compare.difference_video(tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "diff.mp4")
    clip = read_video(tmp_path / "diff.mp4")
    assert clip.frames.shape == (4, 32, 48, 3) and clip.fps == pytest.approx(8.0)
    assert np.all(np.abs(d.mean_abs - 40) < 2)


def test_players_loop_from_one_clock_and_are_capped():
    html = players_html([Player("none", Path("/x/a.mp4"), 512, 320, 10.0), Player("up", Path("/x/b.mp4"), 2048, 1280, 10.0)])
    assert " loop" not in html  # each element looping on its own drifts; the script loops them together
    assert f"max-width:{MAX_UPSCALE * 512}px" in html and html.count('data-action="fullscreen"') == 2
    assert html.count("<option") == 4 and html.count("selected") == 1  # wipe: none | up by default
    assert html.count("<video") == 2 and 'aspect-ratio:512 / 320' in html  # wipe videos appear on demand
