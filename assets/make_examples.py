"""Render the example interior photos in assets/examples/ (license-clean: drawn by this script).

A tiny numpy ray caster: a room made of axis-aligned boxes with procedural textures (wood floor,
painted walls, tiles, fabric), lit by a window (soft directional light + sky fill) with a crude
ambient-occlusion term near the room's edges. Run `python assets/make_examples.py` to rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "examples"


@dataclass
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]
    texture: str = "plain"  # plain | wood | tiles | fabric | glass | emissive
    inside: bool = False  # the room shell is seen from inside


def _texture(kind: str, p: np.ndarray, n: np.ndarray, rng_phase: float) -> np.ndarray:
    """Multiplicative texture in ~[0.6, 1.2] for hit points p (N,3) with normals n (N,3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    if kind == "wood":
        plank = np.floor(x * 4.0)
        grain = 0.5 + 0.5 * np.sin(z * 23.0 + np.sin(x * 7.0 + plank) * 2.0 + plank * 1.7)
        seam = (np.abs(x * 4.0 - np.round(x * 4.0)) < 0.02).astype(float)
        tone = 0.85 + 0.15 * np.sin(plank * 12.9898 + rng_phase) 
        return (tone * (0.85 + 0.25 * grain) * (1 - 0.45 * seam))[:, None]
    if kind == "tiles":
        u = np.where(np.abs(n[:, 0]) > 0.5, z, x)
        v = np.where(np.abs(n[:, 1]) > 0.5, z, y)
        grout = ((np.abs(u * 3 - np.round(u * 3)) < 0.03) | (np.abs(v * 3 - np.round(v * 3)) < 0.03)).astype(float)
        return (1.0 - 0.35 * grout)[:, None]
    if kind == "fabric":
        weave = 0.5 + 0.5 * np.sin(x * 90) * np.sin(y * 90 + z * 90)
        return (0.9 + 0.12 * weave)[:, None]
    return np.ones((p.shape[0], 1))


def render(boxes: list[Box], cam_pos, yaw_deg: float, pitch_deg: float, light_dir, window: Box,
           width=1024, height=640, fov_deg=75.0, ss=2, seed=0) -> np.ndarray:
    W, H = width * ss, height * ss
    f = 0.5 * W / np.tan(np.radians(fov_deg) / 2)
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(jj - W / 2) / f, -(ii - H / 2) / f, np.ones_like(jj)], -1).reshape(-1, 3)
    cy, sy = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    cp, sp = np.cos(np.radians(pitch_deg)), np.sin(np.radians(pitch_deg))
    R = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    d = d @ R.T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.asarray(cam_pos, float)
    N = d.shape[0]
    t_best = np.full(N, np.inf)
    n_best = np.zeros((N, 3))
    c_best = np.zeros((N, 3))
    k_best = np.full(N, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        for k, b in enumerate(boxes):
            lo, hi = np.asarray(b.lo), np.asarray(b.hi)
            t1, t2 = (lo - o) * inv, (hi - o) * inv
            tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
            tn, tf = tmin.max(1), tmax.min(1)
            if b.inside:
                t = np.where(tf > 1e-4, tf, np.inf)
                axis = np.argmin(tmax, 1)
                sign = -np.sign(d[np.arange(N), axis])
            else:
                t = np.where((tn <= tf) & (tn > 1e-4), tn, np.inf)
                axis = np.argmax(tmin, 1)
                sign = -np.sign(d[np.arange(N), axis])
            hit = t < t_best
            t_best = np.where(hit, t, t_best)
            nn_ = np.zeros((N, 3))
            nn_[np.arange(N), axis] = sign
            n_best[hit] = nn_[hit]
            k_best[hit] = k
    p = o + d * t_best[:, None]
    img = np.zeros((N, 3))
    wlo, whi = np.asarray(window.lo), np.asarray(window.hi)
    wc = (wlo + whi) / 2
    L = np.asarray(light_dir, float)
    L /= np.linalg.norm(L)
    room = next(b for b in boxes if b.inside)
    rlo, rhi = np.asarray(room.lo), np.asarray(room.hi)
    for k, b in enumerate(boxes):
        m = k_best == k
        if not m.any():
            continue
        pk, nk = p[m], n_best[m]
        base = np.asarray(b.color)[None] * _texture(b.texture, pk, nk, k * 1.3)
        if b.texture == "emissive":
            img[m] = base * 1.6
            continue
        # window light: direction towards the window plus a sun-like directional term
        to_w = wc[None] - pk
        dist = np.linalg.norm(to_w, axis=1, keepdims=True)
        lw = np.clip((nk * to_w / dist).sum(1, keepdims=True), 0, 1) * (3.0 / (1.0 + 0.15 * dist**2))
        sun = np.clip((nk * L[None]).sum(1, keepdims=True), 0, 1) * 0.55
        sky = 0.35 + 0.1 * nk[:, 1:2]
        # crude ambient occlusion: darken near the room's corners and edges
        gap = np.minimum(pk - rlo[None], rhi[None] - pk)
        close = np.sort(gap, axis=1)[:, :2]
        ao = 1.0 - 0.35 * np.exp(-close[:, 0] * 4) * (1 - np.exp(-close[:, 1] * 6)) - 0.25 * np.exp(-close.sum(1) * 3)
        img[m] = base * (sky + 0.55 * lw + sun) * ao[:, None]
    img = img.reshape(H, W, 3)
    img = img.reshape(height, ss, width, ss, 3).mean((1, 3))
    img = img / (1.0 + img) * 1.55  # soft tone map
    img = np.clip(img, 0, 1) ** (1 / 2.2)
    rng = np.random.default_rng(seed)
    img = img + rng.normal(0, 0.006, img.shape)  # a little sensor grain
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def living_room() -> np.ndarray:
    window = Box((-2.49, 0.9, 1.8), (-2.45, 2.2, 3.8), (1.0, 0.98, 0.92), "emissive")
    boxes = [
        Box((-2.5, 0.0, -1.0), (2.5, 2.7, 6.0), (0.86, 0.83, 0.78), inside=True),
        Box((-2.49, 0.0, -1.0), (2.49, 0.01, 5.99), (0.62, 0.44, 0.28), "wood"),
        window,
        Box((-1.4, 0.0, 4.4), (1.4, 0.45, 5.3), (0.33, 0.40, 0.52), "fabric"),  # sofa seat
        Box((-1.4, 0.45, 5.0), (1.4, 0.95, 5.3), (0.31, 0.38, 0.50), "fabric"),  # sofa back
        Box((-1.6, 0.0, 4.4), (-1.4, 0.65, 5.3), (0.30, 0.37, 0.49), "fabric"),  # arms
        Box((1.4, 0.0, 4.4), (1.6, 0.65, 5.3), (0.30, 0.37, 0.49), "fabric"),
        Box((-0.7, 0.0, 3.0), (0.7, 0.42, 3.8), (0.45, 0.30, 0.18), "wood"),  # coffee table
        Box((-1.9, 0.01, 2.6), (1.9, 0.02, 5.0), (0.72, 0.66, 0.58), "fabric"),  # rug
        Box((-0.9, 1.3, 5.96), (0.9, 2.1, 5.99), (0.20, 0.45, 0.55)),  # painting
        Box((2.0, 0.0, 4.6), (2.4, 1.9, 5.6), (0.55, 0.40, 0.26), "wood"),  # shelf
        Box((1.95, 0.0, 3.9), (2.05, 1.5, 4.0), (0.15, 0.15, 0.15)),  # floor lamp
        Box((1.8, 1.5, 3.75), (2.2, 1.8, 4.15), (1.0, 0.92, 0.75), "emissive"),
    ]
    return render(boxes, (0.2, 1.45, -0.6), -4, -12, (-0.6, 0.5, 0.3), window, seed=1)


def kitchen() -> np.ndarray:
    window = Box((-0.8, 1.2, 5.97), (0.8, 2.2, 5.99), (1.0, 0.98, 0.94), "emissive")
    boxes = [
        Box((-2.2, 0.0, -1.0), (2.2, 2.6, 6.0), (0.90, 0.89, 0.86), inside=True),
        Box((-2.19, 0.0, -1.0), (2.19, 0.01, 5.99), (0.80, 0.80, 0.78), "tiles"),
        window,
        Box((-2.2, 0.0, 5.35), (2.2, 0.9, 6.0), (0.93, 0.93, 0.92)),  # back counter
        Box((-2.2, 0.9, 5.3), (2.2, 0.95, 6.0), (0.25, 0.25, 0.27)),  # worktop
        Box((-2.2, 0.95, 5.95), (2.2, 1.15, 5.99), (0.85, 0.87, 0.88), "tiles"),  # splashback
        Box((-2.2, 1.6, 5.6), (-0.95, 2.4, 6.0), (0.93, 0.93, 0.92)),  # wall cabinets
        Box((0.95, 1.6, 5.6), (2.2, 2.4, 6.0), (0.93, 0.93, 0.92)),
        Box((-1.0, 0.0, 2.8), (1.0, 0.88, 3.7), (0.30, 0.42, 0.40)),  # island
        Box((-1.1, 0.88, 2.7), (1.1, 0.94, 3.8), (0.62, 0.46, 0.30), "wood"),  # island top
        Box((-0.9, 0.0, 2.2), (-0.6, 0.7, 2.5), (0.18, 0.18, 0.20)),  # stools
        Box((0.6, 0.0, 2.2), (0.9, 0.7, 2.5), (0.18, 0.18, 0.20)),
        Box((-0.15, 2.0, 3.15), (0.15, 2.05, 3.35), (1.0, 0.95, 0.85), "emissive"),  # pendant
    ]
    return render(boxes, (0.0, 1.55, -0.5), 3, -14, (0.2, 0.6, -0.8), window, seed=2)


def bedroom() -> np.ndarray:
    window = Box((2.45, 0.8, 2.0), (2.49, 2.1, 3.6), (1.0, 0.96, 0.90), "emissive")
    boxes = [
        Box((-2.5, 0.0, -1.0), (2.5, 2.6, 5.5), (0.80, 0.84, 0.86), inside=True),
        Box((-2.49, 0.0, -1.0), (2.49, 0.01, 5.49), (0.70, 0.55, 0.40), "wood"),
        window,
        Box((-1.1, 0.0, 3.2), (1.1, 0.55, 5.4), (0.93, 0.92, 0.90), "fabric"),  # bed
        Box((-1.15, 0.0, 5.3), (1.15, 1.3, 5.48), (0.42, 0.30, 0.22), "wood"),  # headboard
        Box((-0.95, 0.55, 4.75), (-0.1, 0.7, 5.25), (0.97, 0.97, 0.96), "fabric"),  # pillows
        Box((0.1, 0.55, 4.75), (0.95, 0.7, 5.25), (0.97, 0.97, 0.96), "fabric"),
        Box((-1.12, 0.35, 3.2), (1.12, 0.58, 4.3), (0.55, 0.62, 0.48), "fabric"),  # throw
        Box((-1.8, 0.0, 4.9), (-1.3, 0.55, 5.4), (0.42, 0.30, 0.22), "wood"),  # nightstands
        Box((1.3, 0.0, 4.9), (1.8, 0.55, 5.4), (0.42, 0.30, 0.22), "wood"),
        Box((-1.65, 0.55, 5.05), (-1.45, 0.85, 5.25), (1.0, 0.9, 0.7), "emissive"),
        Box((-2.48, 1.0, 1.5), (-2.45, 1.9, 2.6), (0.75, 0.55, 0.40)),  # artwork
    ]
    return render(boxes, (-0.3, 1.5, -0.7), 6, -13, (-0.7, 0.5, 0.2), window, seed=3)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in (("living_room", living_room), ("kitchen", kitchen), ("bedroom", bedroom)):
        Image.fromarray(fn()).save(OUT / f"{name}.jpg", quality=92)
        print("wrote", OUT / f"{name}.jpg")


if __name__ == "__main__":
    main()
