"""The Tour tab's table and player functions: new photos get the default shots, edits survive, the order
column orders the tour, and a bad row is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from ui.tour_tab import player_html, shot_rows, tour_from_table


def test_rows_keep_edits_and_append_defaults():
    rows = shot_rows(["a.jpg", "b.jpg"], [])
    assert rows == [[1, "a.jpg", "push-in", 4.0, ""], [2, "b.jpg", "pan-right", 4.0, ""]]
    rows[1][2:4] = ["tilt-up", 6]
    again = shot_rows(["b.jpg", "c.jpg"], rows)  # a.jpg removed, c.jpg added
    assert again == [[2, "b.jpg", "tilt-up", 6, ""], [3, "c.jpg", "pan-right", 4.0, ""]]


def test_order_column_orders_the_tour():
    paths = {n: Path(f"/photos/{n}") for n in ("a.jpg", "b.jpg", "c.jpg")}
    rows = [[3, "a.jpg", "push-in", 4, ""], [1, "b.jpg", "pan-left", 5, "hall"], [2, "c.jpg", "", None, ""]]
    tour = tour_from_table(rows, paths, fps=24, width=640, height=360)
    assert [s.photo.name for s in tour.shots] == ["b.jpg", "c.jpg", "a.jpg"]
    assert (tour.shots[0].move, tour.shots[0].seconds, tour.shots[0].prompt) == ("pan-left", 5.0, "hall")
    assert (tour.shots[1].move, tour.shots[1].seconds) == ("push-in", 4.0)  # defaults fill blanks
    with pytest.raises(InputError, match="Row 1: no photo named 'x.jpg'"):
        tour_from_table([[1, "x.jpg", "push-in", 4, ""]], paths)
    with pytest.raises(InputError, match="Unknown camera move 'spin'"):
        tour_from_table([[1, "a.jpg", "spin", 4, ""]], paths)


def test_player_fills_in_shot_by_shot(tmp_path):
    shots = [{"index": 0, "move": "push-in", "seconds": 4.0, "video": tmp_path / "shot-00.mp4"},
             {"index": 1, "move": "pan-right", "seconds": 4.0, "video": None}]
    html = player_html(shots)
    assert html.count('class="shot"') == 1 and "waiting" in html and 'class="tour"' not in html
    assert 'class="tour"' in player_html(shots, tmp_path / "tour.mp4")
