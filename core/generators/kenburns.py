"""The embedded no-weights preview: the camera path rendered over the photo by homographies.

Model. The photo is the view of camera 0 (the path's first pose). The scene is taken to be a
plane facing that camera at `plane_depth` scene units (the same units as the path's
translations). For frame i with relative pose (R, c) (camera-to-frame-0 rotation and centre,
`CameraPath.relative_c2w`), a pixel ray r = K_i^-1 x_i leaves the centre c along R r and meets
the plane z = d where the frame-0 pixel is

    x_0 ~ K_0 ((d - c_z) I + c n^T) R K_i^-1 x_i,      n = (0, 0, 1),

the inverse of the plane-induced homography H = K_i R^T (I - c n^T / d) K_0^-1. For c = 0 this is
the exact rotation homography K_i R^T K_0^-1, whatever the depth. Directions follow from the
OpenCV axes: moving forward magnifies, moving left (-x) shifts the content right, turning left
(negative yaw) brings what was on the left into view.

Borders. The photo is resized so that the output's centre crop covers the frame ("cover", no
distortion); the whole resized photo is kept as the warp source, so moves that look past the
crop show real photo content first. A preview must never invent content, so the virtual camera
then zooms in (one constant factor for the whole clip, like a longer lens, never a zoom move)
just as much as needed for every frame to stay inside the photo; `info["zoom"]` and
`info["framing"]` say so. Up to `MAX_ZOOM`: a move that would need more (or that leaves the
photo whatever the zoom, e.g. a long slide) shows what lies beyond the photo as a neutral grey
hatched fill (`OUTSIDE_FILL`), reported in `info["outside_fraction_max"]` and a warning.
`info["photo_fraction_min"]` says how much of the worst frame came from the photo itself.

Cost: one resize, then one `cv2.warpPerspective` per frame with precomputed matrices.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import cv2
import numpy as np

from ..camera import CameraPath
from ..clip import Clip
from ..errors import InputError
from ..photo import check_photo
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from .base import GenerateRequest, GenerateResult, Generator

QUALITIES = ("high", "fast")
# A ray must point at least this far forward (cosine to the photo's axis) to meet the plane
# ahead; beyond it the preview would need content from behind the photo camera.
_MIN_FORWARD = 0.02
# The camera must stay this fraction of the plane depth in front of the plane.
_MIN_CLEARANCE = 0.05
_MAX_OUTPUT_BYTES = 4 * 2**30
# Beyond this zoom a preview turns into a blurry close-up of a few hundred photo pixels; the
# rest of the move is shown as labelled fill instead.
MAX_ZOOM = 2.0
# The neutral fill for what lies outside the photo: mid grey with lighter diagonal hatching, so
# it reads as "nothing here" and never as part of the room.
OUTSIDE_FILL = (128, 128, 128)
OUTSIDE_HATCH = (150, 150, 150)

# Pixel centres: cv2 puts them at integers, the RealEstate10K intrinsics at i + 0.5.
_TO_CONTINUOUS = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_TO_INTEGER = np.linalg.inv(_TO_CONTINUOUS)


def check_image(image: Any) -> np.ndarray:
    """The photo as a contiguous (H, W, 3) uint8 array, or InputError (core.photo's one rule)."""
    return np.ascontiguousarray(check_photo(image))


def prepare_source(
    image: np.ndarray, width: int, height: int, supersample: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Resize the photo so a centred `width*ss` x `height*ss` crop covers it.

    Returns (source (Hs, Ws, 3) uint8 = the whole resized photo, A (3, 3) mapping continuous
    output-frame-0 pixels to continuous source pixels, crop box [left, top, right, bottom] in
    the original photo's pixels).
    """
    h, w = image.shape[:2]
    ss = supersample
    scale = ss * max(width / w, height / h)
    ws = max(ss * width, int(round(w * scale)))
    hs = max(ss * height, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    source = image if (ws, hs) == (w, h) else cv2.resize(image, (ws, hs), interpolation=interp)
    ox, oy = (ws - ss * width) // 2, (hs - ss * height) // 2  # whole pixels, like CamI2V's crop
    A = np.array([[ss, 0.0, ox], [0.0, ss, oy], [0.0, 0.0, 1.0]])
    sx, sy = w / ws, h / hs
    crop = [int(round(ox * sx)), int(round(oy * sy)),
            int(round((ox + ss * width) * sx)), int(round((oy + ss * height) * sy))]
    return np.ascontiguousarray(source), A, crop


def frame_to_photo_homographies(
    camera: CameraPath, width: int, height: int, plane_depth: float
) -> np.ndarray:
    """(T, 3, 3) maps from continuous pixels of output frame i to continuous pixels of frame 0.

    Raises InputError when a frame cannot be rendered from the photo: the camera reaches the
    plane, or a corner ray turns away from the photo's hemisphere (e.g. pans beyond ~90 deg).
    """
    rel = camera.relative_c2w(0)
    R, c = rel[:, :3, :3], rel[:, :3, 3]
    K = camera.K(width, height)
    K0 = K[0]
    Kinv = np.linalg.inv(K)
    d = float(plane_depth)
    n = np.array([0.0, 0.0, 1.0])

    clearance = d - c[:, 2]
    bad = np.flatnonzero(clearance < _MIN_CLEARANCE * d)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"Ken Burns preview: frame {i} gets within {max(clearance[i], 0.0):.3g} units of the picture "
            f"plane at depth {d:g}; raise 'Plane depth' or shorten the move."
        )
    corners = np.array([[0.0, 0.0, 1.0], [width, 0.0, 1.0], [0.0, height, 1.0], [width, height, 1.0]])
    rays = np.einsum("tij,kj->tki", Kinv, corners)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    forward = np.einsum("tj,tkj->tk", R[:, 2, :], rays)  # z of R r in frame 0
    bad = np.flatnonzero(forward.min(axis=1) < _MIN_FORWARD)
    if bad.size:
        i = int(bad[0])
        angle = np.degrees(np.arccos(np.clip(forward[i].min(), -1.0, 1.0)))
        raise InputError(
            f"Ken Burns preview: frame {i} looks {angle:.0f} degrees away from the photo's view, beyond what "
            "one photo can show; lower the move amount (AI models can go further)."
        )
    plane = clearance[:, None, None] * np.eye(3) + c[:, :, None] * n[None, None, :]
    return K0[None] @ plane @ R @ Kinv


def camera_problem(camera: CameraPath, width: int = 512, height: int = 320, plane_depth: float = 1.5) -> str | None:
    """Why the preview would refuse `camera` (the one-line InputError text), or None. Cheap:
    matrices only, so the dashboard can warn while a path is being drawn."""
    try:
        frame_to_photo_homographies(camera, width, height, plane_depth)
    except InputError as exc:
        return str(exc)
    return None


def render_kenburns(
    image: np.ndarray,
    camera: CameraPath,
    width: int = 512,
    height: int = 320,
    plane_depth: float = 1.5,
    quality: str = "high",
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render `camera` over `image`.

    image: (H, W, 3) uint8 RGB, any size. Returns frames (T, height, width, 3) uint8 RGB with
    T = camera.num_frames, and an info dict (frame 0's crop box in photo pixels, source size,
    supersample factor, zoom and a `framing` sentence, photo coverage, outside fraction,
    warnings). quality "fast": source at output resolution, bilinear;
    "high": source at 2x when the photo has the pixels (frame 0 then equals a 2x2 box-filtered
    crop), bicubic. Deterministic: identical inputs give identical bytes.
    """
    t_start = time.perf_counter()
    progress = as_progress(progress)
    image = check_image(image)
    if quality not in QUALITIES:
        raise InputError(f"Quality must be one of {', '.join(QUALITIES)}; got {quality!r}.")
    width, height = int(width), int(height)
    if width < 8 or height < 8:
        raise InputError(f"Output size {width}x{height} is too small (at least 8x8).")
    if not plane_depth > 0:
        raise InputError(f"Plane depth must be positive, got {plane_depth}.")

    frame_bytes = width * height * 3
    if camera.num_frames * frame_bytes > _MAX_OUTPUT_BYTES:
        raise InputError(
            f"{camera.num_frames} frames of {width}x{height} need "
            f"{camera.num_frames * frame_bytes / 2**30:.1f} GiB; lower the size or the number of frames."
        )
    warnings: list[str] = []
    fx_px, fy_px = camera.intrinsics[0, 0] * width, camera.intrinsics[0, 1] * height
    if abs(np.log(fx_px / fy_px)) > 0.01:
        warnings.append(
            f"The camera path's intrinsics were made for aspect {width / height * fy_px / fx_px:.3g}, "
            f"the output is {width / height:.3g}: pixels are treated as non-square."
        )

    H_inv = frame_to_photo_homographies(camera, width, height, plane_depth)
    native = min(image.shape[1] / width, image.shape[0] / height)  # photo pixels per output pixel
    supersample = 2 if quality == "high" and native >= 2.0 else 1
    source, A, crop = prepare_source(image, width, height, supersample)
    maps = _TO_INTEGER[None] @ A[None] @ H_inv @ _TO_CONTINUOUS[None]
    maps /= maps[:, 2:3, 2:3]

    zoom, fits = fit_zoom(maps, width, height, source.shape[1], source.shape[0], MAX_ZOOM)
    if zoom > 1.0:
        maps = maps @ _zoom_matrix(zoom, width, height)[None]
        s = 1.0 / zoom  # frame 0's view is the centre 1/zoom of the cover crop
        cx, cy, cw, ch = (crop[0] + crop[2]) / 2, (crop[1] + crop[3]) / 2, crop[2] - crop[0], crop[3] - crop[1]
        crop = [int(round(cx - s * cw / 2)), int(round(cy - s * ch / 2)),
                int(round(cx + s * cw / 2)), int(round(cy + s * ch / 2))]
    coverage = _photo_fraction(maps, width, height, source.shape[1], source.shape[0])
    interp = cv2.INTER_CUBIC if quality == "high" else cv2.INTER_LINEAR
    flags = interp | cv2.WARP_INVERSE_MAP
    t = camera.num_frames
    frames = np.empty((t, height, width, 3), dtype=np.uint8)
    hatch = None if fits else _hatch(width, height)
    mask = None if fits else np.full(source.shape[:2], 255, np.uint8)
    inside = np.empty((height, width), np.uint8)
    outside_max = 0.0
    progress(0.0, "Ken Burns: warping")
    for i in range(t):
        if fits:
            # Every sample lies within half a pixel of the photo: replicating the edge pixel
            # for the interpolation taps invents nothing.
            cv2.warpPerspective(source, maps[i], (width, height), dst=frames[i], flags=flags,
                                borderMode=cv2.BORDER_REPLICATE)
        else:
            cv2.warpPerspective(source, maps[i], (width, height), dst=frames[i], flags=flags,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=OUTSIDE_FILL)
            cv2.warpPerspective(mask, maps[i], (width, height), dst=inside,
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            out = inside == 0
            frames[i][out] = hatch[out]
            outside_max = max(outside_max, float(out.mean()))
        progress((i + 1) / t, f"frame {i + 1}/{t}")

    if zoom > 1.0:
        framing = f"Ken Burns preview zoomed in {zoom:.2f}x so the camera stays inside the photo."
    else:
        framing = "Ken Burns preview: the whole move stays inside the photo."
    if outside_max > 0.0:
        warnings.append(
            f"The move leaves the photo (up to {100 * outside_max:.0f}% of a frame, even zoomed in "
            f"{zoom:.2f}x); that part is shown as grey hatching, not invented. Lower the move amount to avoid it."
        )

    info = {
        "renderer": "kenburns",
        "size": [width, height],
        "num_frames": t,
        "camera": camera.name,
        "plane_depth": float(plane_depth),
        "quality": quality,
        "crop_box": crop,
        "photo_size": [int(image.shape[1]), int(image.shape[0])],
        "source_size": [int(source.shape[1]), int(source.shape[0])],
        "supersample": supersample,
        "zoom": float(zoom),
        "framing": framing,
        "outside_fraction_max": outside_max,
        "photo_fraction_min": float(coverage.min()),
        "warnings": warnings,
        "timings": {"render_s": time.perf_counter() - t_start},
    }
    return frames, info


def _photo_fraction(maps: np.ndarray, width: int, height: int, src_w: int, src_h: int) -> np.ndarray:
    """(T,) fraction of each frame's pixels (on a coarse grid) that sample inside the photo."""
    gx, gy = np.meshgrid(np.linspace(0, width - 1, 33), np.linspace(0, height - 1, 21))
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    src = maps @ pts
    x, y = src[:, 0] / src[:, 2], src[:, 1] / src[:, 2]
    inside = (x >= -0.5) & (x <= src_w - 0.5) & (y >= -0.5) & (y <= src_h - 0.5)
    return inside.mean(axis=1)



def _zoom_matrix(zoom: float, width: int, height: int) -> np.ndarray:
    """(3, 3) map from integer output pixels to integer pixels of a view zoomed by `zoom` about
    the frame centre ((width - 1) / 2, (height - 1) / 2)."""
    s = 1.0 / zoom
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return np.array([[s, 0.0, cx * (1.0 - s)], [0.0, s, cy * (1.0 - s)], [0.0, 0.0, 1.0]])


def fit_zoom(maps: np.ndarray, width: int, height: int, src_w: int, src_h: int,
             max_zoom: float = MAX_ZOOM) -> tuple[float, bool]:
    """Smallest zoom >= 1 that keeps every pixel centre of every frame inside the source.

    maps: (T, 3, 3) integer output pixels -> integer source pixels. The output rectangle maps to
    a convex quadrilateral (every ray meets the plane ahead), so its four corner pixel centres
    decide, and shrinking the view about its centre only shrinks the quadrilateral: bisection
    on 1/zoom. Returns (zoom, fits): fits is False when even `max_zoom` (or any zoom, if a
    frame's centre itself is outside) leaves part of a frame outside; zoom is then `max_zoom`.
    """
    corners = np.array([[0.0, 0.0, 1.0], [width - 1.0, 0.0, 1.0],
                        [0.0, height - 1.0, 1.0], [width - 1.0, height - 1.0, 1.0]]).T
    eps = 1e-6

    def inside(zoom: float) -> bool:
        pts = maps @ _zoom_matrix(zoom, width, height) @ corners  # (T, 3, 4)
        x, y = pts[:, 0] / pts[:, 2], pts[:, 1] / pts[:, 2]
        return bool(((x >= -eps) & (x <= src_w - 1 + eps) & (y >= -eps) & (y <= src_h - 1 + eps)).all())

    if inside(1.0):
        return 1.0, True
    if not inside(max_zoom):
        return float(max_zoom), False
    lo, hi = 1.0, float(max_zoom)  # inside(hi) holds, inside(lo) does not
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    return hi, True


def _hatch(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 neutral grey with lighter diagonal stripes: the outside fill."""
    y, x = np.mgrid[0:height, 0:width]
    stripes = ((x + y) // 6) % 4 == 0
    out = np.empty((height, width, 3), np.uint8)
    out[:] = OUTSIDE_FILL
    out[stripes] = OUTSIDE_HATCH
    return out


class KenBurnsGenerator(Generator):
    """No-AI preview: the camera path applied to the photo as a flat picture (plane homography).

    Instant on CPU, exact for pure rotations, approximate (no parallax) for translations.
    """

    name = "kenburns"
    label = "Ken Burns preview (no AI)"
    width = 512
    height = 320
    num_frames = 16
    fps = 10.0
    camera_control = True
    is_ai = False
    any_length = True

    def param_specs(self) -> Sequence[ParamSpec]:
        return (
            ParamSpec("width", "int", 512, "Width", 8, 4096, 8, help="Output width in pixels."),
            ParamSpec("height", "int", 320, "Height", 8, 4096, 8, help="Output height in pixels."),
            ParamSpec("num_frames", "int", 0, "Frames", 0, 1024, 1,
                      help="0 follows the camera path; otherwise the path is resampled to this many frames."),
            ParamSpec("fps", "float", 10.0, "Frames per second", 1.0, 120.0, 1.0),
            ParamSpec("plane_depth", "float", 1.5, "Plane depth", 0.05, 1000.0, 0.05,
                      help="Distance of the flat picture from the camera, in camera-path units; "
                           "smaller exaggerates translations."),
            ParamSpec("quality", "choice", "high", "Quality", choices=QUALITIES,
                      help="high: 2x supersampled source, bicubic; fast: bilinear at output size."),
        )

    def generate(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        progress = as_progress(progress)
        params = resolve_params(self.param_specs(), request.params)
        if params["num_frames"] == 1:
            raise InputError("Frames must be 0 (follow the camera path) or at least 2.")
        camera = request.camera
        if request.num_frames is not None and request.num_frames != camera.num_frames:
            camera = camera.resampled(request.num_frames)  # a long shot: native at any length
        elif params["num_frames"] and params["num_frames"] != camera.num_frames:
            camera = camera.resampled(params["num_frames"])
        frames, info = render_kenburns(
            request.image, camera, params["width"], params["height"], params["plane_depth"],
            params["quality"], progress,
        )
        info["params"] = dict(params)
        info["fps"] = float(params["fps"])
        return GenerateResult(Clip(frames, params["fps"]), info, crop_box=tuple(info["crop_box"]),
                              timings={"render": info["timings"]["render_s"]}, params=dict(params))
