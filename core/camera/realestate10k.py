"""RealEstate10K camera text, the format CamI2V's demo files and the dataset use.

One URL comment line, then per frame
``timestamp_us fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2`` (w2c 3x4,
intrinsics normalised by the image size). `CameraPath.to_realestate10k` / `from_realestate10k`
are the typed front door; these functions work on arrays.
"""

from __future__ import annotations

import math
import urllib.parse

import numpy as np

from ..errors import InputError
from .geometry import _check_float, _to44

URL_PREFIX = "https://example.com/camera-path/"  # URL comment line written on export
_RE10K_FIELDS = 19  # timestamp fx fy cx cy k1 k2 + 12 entries of the 3x4 w2c


def format_text(w2c: np.ndarray, intrinsics: np.ndarray, name: str, fps: float = 10.0,
                url: str | None = None) -> str:
    """RealEstate10K text: a URL comment line, then per frame
    ``timestamp_us fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2`` (w2c).

    Numbers are written with `repr`, so `from_realestate10k` reads back identical floats.
    The default URL carries the path `name`, which `parse_text` recovers.
    """
    fps = _check_float(fps, "Frames per second", 1e-3, 1e4)
    lines = [url or URL_PREFIX + urllib.parse.quote(name, safe="")]
    for i in range(w2c.shape[0]):
        stamp = int(round(i * 1e6 / fps))
        nums = [*intrinsics[i].tolist(), 0.0, 0.0, *w2c[i].reshape(-1).tolist()]
        lines.append(" ".join([str(stamp)] + [repr(float(v)) for v in nums]))
    return "\n".join(lines) + "\n"

def parse_text(text: str, name: str | None = None,
               source: str = "camera file") -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Parse RealEstate10K text (also CamI2V demo files: dummy timestamps, normalised K).

    Lines starting with ``http`` are URL comments and blank lines are skipped. Distortion
    (k1, k2) and timestamps are read but not used. If every pose is a mirror (det -1, as in
    most CamI2V demo files, whose first frame is diag(-1, 1, 1)), the poses are re-expressed
    relative to frame 0; the mirrors cancel and this is precisely the relative motion the
    camera models compute from such a file.
    """
    rows: list[list[float]] = []
    linenos: list[int] = []
    url = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.lower().startswith("http"):
            url = url or line
            continue
        parts = line.split()
        if len(parts) != _RE10K_FIELDS:
            raise InputError(
                f"{source}, line {lineno}: expected {_RE10K_FIELDS} numbers (timestamp fx fy cx cy "
                f"k1 k2 and the 12 entries of the 3x4 world-to-camera matrix), found {len(parts)}."
            )
        row = []
        for col, tok in enumerate(parts, start=1):
            try:
                v = float(tok)
            except ValueError:
                raise InputError(
                    f"{source}, line {lineno}, field {col}: {tok!r} is not a number."
                ) from None
            if not math.isfinite(v):
                raise InputError(f"{source}, line {lineno}, field {col}: {tok!r} is not a finite number.")
            row.append(v)
        rows.append(row)
        linenos.append(lineno)
    if not rows:
        raise InputError(f"{source}: no camera lines found (expected RealEstate10K text).")
    arr = np.array(rows)
    if name is None:
        name = "imported"
        if url and url.startswith(URL_PREFIX):
            name = urllib.parse.unquote(url[len(URL_PREFIX):]) or name
    w2c = arr[:, 7:].reshape(-1, 3, 4)
    intr = arr[:, 1:5]
    det = np.linalg.det(w2c[:, :, :3])
    if (det < 0).any():
        if not (det < 0).all():
            odd = np.flatnonzero((det < 0) != (det[0] < 0))[0]
            raise InputError(
                f"{source}, line {linenos[odd]}: rotation determinant {det[odd]:+.3f} differs in sign "
                f"from the first frame's ({det[0]:+.3f}); mirrored and unmirrored poses cannot be mixed."
            )
        w44 = _to44(w2c)
        rel = w44[0] @ np.linalg.inv(w44)  # inv(c2w_0) @ c2w_i
        return rel, intr, name, True
    return w2c, intr, name, False
