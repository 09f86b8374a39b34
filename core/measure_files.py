"""Every measure of `core.metrics.measure` for video files made anywhere (`python -m core measure`).

The dashboard and the study call `core.metrics.measure` on each chain's clip with the input photo
and the generator's size; here the same function runs on decoded files, so other generators'
outputs are scored with the same definitions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import metrics as metriclib
from .errors import InputError

# (block key, label) shown by the plain-text summary, in order
SUMMARY_KEYS: tuple[tuple[str, str], ...] = (
    ("warp_psnr", "warped PSNR dB"), ("warp_ssim", "warped SSIM"), ("warp_mae", "warped MAE"),
    ("flicker", "flicker"), ("valid_fraction", "valid"), ("lap_var", "Laplacian var"),
    ("grad_energy", "grad energy"), ("noise_sigma", "noise sigma"),
    ("tpsnr", "tPSNR dB (incl. motion)"), ("tssim", "tSSIM (incl. motion)"),
)


def parse_size(text: str) -> tuple[int, int]:
    """"512x320" -> (512, 320)."""
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 11:
        raise InputError(f"--common-size expects WIDTHxHEIGHT of at least 11x11, e.g. 512x320; got {text!r}.")
    return size


def measure_files(paths: Sequence[str | os.PathLike], *, reference: str | os.PathLike | None = None,
                  common_size: tuple[int, int] | None = None, flow: str | None = "dis-fast",
                  study: bool = True) -> dict[str, dict[str, Any]]:
    """`measure()` of each video (mp4/gif/PNG folder), keyed by file name (the path as given when
    two files share a name). common_size: (width, height) of the common block; default the
    smallest frame size among the files (the generator's size when comparing its chains).
    reference: the input photo for fidelity (optional)."""
    from .video import load_image, read_video

    if not paths:
        raise InputError("Name at least one video to measure.")
    from .limits import MAX_MEASURE_PIXELS

    clips = [(Path(p), read_video(p, max_pixels=MAX_MEASURE_PIXELS)) for p in paths]
    if common_size is None:
        common_size = min(((c.frames.shape[2], c.frames.shape[1]) for _, c in clips), key=lambda s: s[0] * s[1])
    ref = load_image(reference) if reference is not None else None
    names = [p.name for p, _ in clips]
    out: dict[str, dict[str, Any]] = {}
    for (path, clip), name in zip(clips, names):
        key = name if names.count(name) == 1 else str(path)
        out[key] = metriclib.measure(clip, reference_image=ref, common_size=common_size, study=study, flow=flow)
    return out


def format_summary(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain text: per file and block (own size, common size), mean ± std of the main measures."""
    lines = []
    for name, res in results.items():
        w, h = res["size"]
        lines.append(f"{name}: {res['num_frames']} frames {w}x{h}"
                     + (f" @ {res['fps']:g} fps" if res.get("fps") else ""))
        for variant in ("native", "common"):
            block = res.get(variant)
            if not block:
                continue
            cw, ch = block["size"]
            parts = []
            for key, label in SUMMARY_KEYS:
                s = block.get(key)
                if s and s.get("mean") is not None:
                    parts.append(f"{label} {s['mean']:.4g} ± {s['std']:.2g}")
            lines.append(f"  at {cw}x{ch}: " + "; ".join(parts))
        fid = res.get("fidelity")
        if fid and fid.get("native"):
            lines.append(f"  fidelity to the photo: PSNR {fid['native']['psnr']:.2f} dB, SSIM {fid['native']['ssim']:.4f}")
    return "\n".join(lines)
