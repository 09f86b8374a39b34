"""A tour's pictures: fitting shots to the tour size and length, the vertical (9:16) crop, and
the transitions (cross-fade, dip to black) an `Assembler` applies while the shots stream in."""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from .errors import InputError, StudioError
from .tour_model import Tour, vertical_size


# --------------------------------------------------------------------------------- pictures

def vertical_crop(frame: np.ndarray) -> np.ndarray:
    """The centre 9:16 column of an (H, W, 3) frame (a view, no copy)."""
    h, w = frame.shape[:2]
    vw, _ = vertical_size(w, h)
    x0 = (w - vw) // 2
    return frame[:, x0:x0 + vw]


def fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3): the centred crop of the target's aspect
    (cover: no bars), then resized (area filter when shrinking, Lanczos when enlarging)."""
    t, h, w = frames.shape[:3]
    if (w, h) == (width, height):
        return frames
    target = width / height
    if w / h > target:  # too wide: crop columns
        cw, ch = max(2, int(round(h * target))), h
    else:
        cw, ch = w, max(2, int(round(w / target)))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    interp = cv2.INTER_AREA if cw >= width else cv2.INTER_LANCZOS4
    out = np.empty((t, height, width, 3), np.uint8)
    for i in range(t):
        crop = frames[i, y0:y0 + ch, x0:x0 + cw]
        out[i] = crop if (cw, ch) == (width, height) else cv2.resize(crop, (width, height), interpolation=interp)
    return out


def fit_count(frames: np.ndarray, n: int) -> np.ndarray:
    """Exactly `n` frames: unchanged when the count matches, else the nearest frame in time
    (used only to absorb an off-by-a-few count after retiming)."""
    t = frames.shape[0]
    if t == n:
        return frames
    idx = np.rint(np.linspace(0, t - 1, n)).astype(int)
    return frames[idx]


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Mix k frames: out_j = (1 - a_j) * outgoing_j + a_j * incoming_j, a_j = (j + 1) / (k + 1),
    rounded to the nearest uint8. Both (k, H, W, 3) uint8. The first and last mixed frames are already
    partly the other shot, so the fade has no repeated frame at either end."""
    k = incoming.shape[0]
    if outgoing.shape != incoming.shape:
        raise ValueError(f"cross-fade of {outgoing.shape} into {incoming.shape}")
    out = np.empty_like(incoming)
    for j in range(k):  # per frame in OpenCV (rounds to nearest, saturates): no float copy of the clip
        a = (j + 1) / (k + 1)
        cv2.addWeighted(outgoing[j], 1.0 - a, incoming[j], a, 0.0, dst=out[j])
    return out


def dip_gains(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness gains of a dip to black: (gains of the outgoing shot's last m frames, gains of
    the incoming shot's first m frames) = ((m - j) / m, j / m) for j = 0..m-1. Around the join
    the gains run 1, (m-1)/m, ..., 1/m | 0, 1/m, ..., (m-1)/m, 1: a V whose black bottom is the
    incoming shot's first frame."""
    out = (m - np.arange(m, dtype=np.float32)) / m
    return out, np.arange(m, dtype=np.float32) / m


def _gain(frames: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """frames (m, H, W, 3) uint8 times one gain per frame, rounded."""
    out = np.empty_like(frames)
    for j, g in enumerate(gains):
        cv2.convertScaleAbs(frames[j], dst=out[j], alpha=float(g))
    return out


class Assembler:
    """Joins a tour's shots one at a time (so the tour streams into its encoder while later shots
    still render). `add(frames)` takes shot i's rendered frames, (tour.render_frames(i), H, W, 3)
    uint8 (its own frames then the cross-fade handle), and returns the tour frames it completes:
    shot i's own frames with the transitions applied. Holds only the pending handle between calls.
    """

    def __init__(self, tour: Tour):
        self.tour = tour
        self.next_index = 0
        self._handle: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> np.ndarray:
        tour, i = self.tour, self.next_index
        n_shots = len(tour.shots)
        if i >= n_shots:
            raise ValueError("more shots than the tour has")
        kind, k = tour.transition.kind, tour.transition.frames(tour.fps)
        own_n, want = tour.shot_frames(i), tour.render_frames(i)
        if frames.shape[0] != want:
            raise StudioError(f"Shot {i + 1} has {frames.shape[0]} frames, the tour needs {want}.")
        own = frames[:own_n].copy()
        if kind == "crossfade" and i > 0 and k:
            own[:k] = crossfade(self._handle, own[:k])
        if kind == "dip" and k:
            fade_out, fade_in = dip_gains(k)
            if i > 0:
                own[:k] = _gain(own[:k], fade_in)
            if i < n_shots - 1:
                own[own_n - k:] = _gain(own[own_n - k:], fade_out)
        self._handle = frames[own_n:].copy() if tour.handle_frames(i) else None
        self.next_index += 1
        return own


def assemble(tour: Tour, shots: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the tour's frames in order, exactly tour.num_frames of (H, W, 3) uint8, from each
    shot's rendered frames (see `Assembler`)."""
    asm = Assembler(tour)
    for frames in shots:
        yield from asm.add(frames)
    if asm.next_index != len(tour.shots):
        raise ValueError(f"{asm.next_index} shots for a tour of {len(tour.shots)}")
