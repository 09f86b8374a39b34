"""The Create tab's form helpers: the framing preview, one control per parameter, keyframe tables
and the camera description a form holds. Pure functions over plain values (no event wiring).
"""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from core import camera as cam
from core import limits
from core.errors import StudioError
from core.params import ParamSpec
from core.postprocess.chains import STANDARD_CHAINS
from core.service import CameraSpec

from .uploads import uploaded_file

MODES = ("Preset", "Keyframes", "Waypoints", "File")
KF_HEADERS = ["time", "x", "y", "z", "yaw", "pitch", "roll"]
MAX_CAMERA_FILE_BYTES = 2 * 1024**2  # 1024 frames of RealEstate10K text take about 0.4 MB
CHAIN_HELP = {
    "none": "the generator's clip as it is",
    "denoise": "denoise only",
    "upscale": "upscale only",
    "denoise+upscale": "denoise, then upscale",
    "upscale+denoise": "upscale, then denoise",
    "interpolate": "more frames per second (frame interpolation)",
}
UI_CHAINS = STANDARD_CHAINS + ("interpolate",)


def cover_box(w: int, h: int, tw: int, th: int) -> tuple[float, float, float, float]:
    """The centred crop (x0, y0, x1, y1) of a w x h photo that covers a tw x th frame."""
    scale = max(tw / w, th / h)
    cw, ch = tw / scale, th / scale
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    return x0, y0, x0 + cw, y0 + ch


def framing_preview(image: np.ndarray | None, width: int, height: int,
                    waypoints: list[tuple[float, float]]) -> np.ndarray | None:
    """The photo dimmed outside the model's crop, with the clicked waypoints drawn in order."""
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = min(1.0, 960 / max(w, h))
    im = Image.fromarray(image)
    if scale < 1:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    x0, y0, x1, y1 = (v * scale for v in cover_box(w, h, width, height))
    arr = np.asarray(im).astype(np.float32)
    mask = np.full(arr.shape[:2], 0.45, np.float32)
    mask[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = 1.0
    im = Image.fromarray((arr * mask[..., None]).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=2)
    pts = [(x0 + (x1 - x0) * u, y0 + (y1 - y0) * v) for u, v in waypoints]
    start = ((x0 + x1) / 2, (y0 + y1) / 2)
    if pts:
        d.line([start] + pts, fill=(255, 200, 0), width=3)
    for k, (px, py) in enumerate(pts, 1):
        d.ellipse([px - 9, py - 9, px + 9, py + 9], fill=(255, 200, 0), outline=(0, 0, 0))
        d.text((px - 3, py - 6), str(k), fill=(0, 0, 0))
    return np.asarray(im)


def spec_component(spec: ParamSpec, visible: bool = True):
    """A gradio control for one ParamSpec."""
    label = spec.label or spec.name
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), label=label, info=spec.help or None)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, label=label, info=spec.help or None)
    if spec.kind == "str":
        return gr.Textbox(value=str(spec.default), label=label, info=spec.help or None, lines=2)
    if spec.minimum is not None and spec.maximum is not None and spec.maximum - spec.minimum <= 10000:
        step = spec.step or (1 if spec.kind == "int" else (spec.maximum - spec.minimum) / 100)
        return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=step, label=label,
                         info=spec.help or None)
    return gr.Number(value=spec.default, label=label, info=spec.help or None,
                     precision=0 if spec.kind == "int" else None)


def safe_stem(text: str, default: str = "path") -> str:
    """A file-name stem made of letters, digits, '-' and '_' only (user text never becomes a path)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")[:60] or default


def _error(exc: BaseException) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(str(exc), print_exception=False)
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). Details are in the server log.")


def adherence_markdown(a: dict[str, Any]) -> str:
    """One line on how well the video follows the requested camera path."""
    if not a.get("available"):
        return f"Camera adherence: not measured ({a.get('reason', 'no estimate')})."
    return (f"**Camera adherence** ({a.get('estimator')}): RotErr {a['RotErr']:.3f} rad "
            f"({a['RotErr_deg']:.1f}°), TransErr {a['TransErr']:.3f}, CamMC {a['CamMC']:.3f} "
            "— sums over frames against the requested path; lower is closer, 0 is exact.")


def _keyframe_rows(path: cam.CameraPath, n: int = 5) -> list[list[float]]:
    rows = []
    for kf in cam.keyframes_from_path(path, n):
        rows.append([round(kf.time, 4), *(round(v, 4) for v in kf.position),
                     round(kf.yaw, 3), round(kf.pitch, 3), round(kf.roll, 3)])
    return rows


def _rows_to_list(rows: Any) -> list[list[float]]:
    """A keyframe table's non-empty rows as plain lists (pandas frame or list of lists)."""
    if rows is None:
        return []
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    return [list(r) for r in values if any(c not in (None, "") and not (isinstance(c, float) and np.isnan(c))
                                           for c in r)]


def _rows_to_keyframes(rows: Any) -> tuple[dict[str, Any], ...]:
    if rows is None:
        return ()
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    limits.check_rows(len(values), "The keyframe table", limits.MAX_KEYFRAMES)  # before any row is read
    out = []
    for k, row in enumerate(values, 1):
        cells = [c for c in row]
        if all(c in (None, "") or (isinstance(c, float) and np.isnan(c)) for c in cells):
            continue
        try:
            t, x, y, z, yaw, pitch, roll = (float(c) if c not in (None, "") else 0.0 for c in cells[:7])
        except (TypeError, ValueError):
            raise StudioError(f"Keyframe row {k}: every cell must be a number.") from None
        out.append({"time": t, "position": [x, y, z], "yaw": yaw, "pitch": pitch, "roll": roll})
    return tuple(out)


def camera_spec(mode, pid, amt, dist, ease, kf_rows, wps, dep, fpath, wp_amt=1.0) -> CameraSpec:
    """The CameraSpec the camera controls describe (in the order of CreateTab.cam_inputs)."""
    if mode == "Keyframes":
        return CameraSpec(mode="keyframes", keyframes=_rows_to_keyframes(kf_rows))
    if mode == "Waypoints":
        if not wps:
            raise StudioError("Click the framing preview to add at least one waypoint.")
        return CameraSpec(mode="waypoints", waypoints=tuple(tuple(p) for p in wps), depth=float(dep),
                          amount=None if wp_amt is None or float(wp_amt) >= 1.0 else float(wp_amt))
    if mode == "File":
        if not fpath:
            raise StudioError("Upload a RealEstate10K camera file (.txt) first.")
        f = uploaded_file(fpath, "The camera file")
        try:
            if f.stat().st_size > MAX_CAMERA_FILE_BYTES:
                raise StudioError(f"The camera file is {f.stat().st_size / 1024**2:.1f} MB; a RealEstate10K "
                                  f"path of up to 1024 frames is well under {MAX_CAMERA_FILE_BYTES // 1024**2} MB.")
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise StudioError(f"Cannot read the camera file: {exc.strerror}.") from None
        return CameraSpec(mode="file", text=text, distance=float(dist))
    return CameraSpec(mode="preset", preset=pid, amount=float(amt), distance=float(dist), easing=ease)
