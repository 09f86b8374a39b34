"""The no-weights Ken Burns preview: geometry, borders, determinism, progress and cancellation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from core.camera import PRESETS, preset_path
from core.clip import Clip
from core.errors import Cancelled, InputError
from core.generators.base import GenerateRequest, Generator
from core.generators.kenburns import KenBurnsGenerator, render_kenburns
from core.progress import Progress

W, H = 256, 160
F = 0.5 * max(W, H)  # the default focal length in pixels
BG, FG = 70, 235


def square_photo(width: int = W, height: int = H, side: int = 24, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Flat grey photo with one bright square (centred unless `centre` is given, in pixels)."""
    img = np.full((height, width, 3), BG, np.uint8)
    cx, cy = centre if centre is not None else (width / 2, height / 2)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    img[y0:y0 + side, x0:x0 + side] = FG
    return img


def textured_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture with values well inside (30, 230): no black anywhere."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height // 8 + 2, width // 8 + 2, 3))
    img = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min())
    return (40 + 180 * img).astype(np.uint8)


def bright_blob(frame: np.ndarray) -> tuple[float, float, float]:
    """Centroid (x, y) and area of the largest bright component (reflected copies ignored)."""
    mask = (frame[..., 0] > (BG + FG) / 2).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask)
    assert n > 1, "no bright square in frame"
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return float(cents[k, 0]), float(cents[k, 1]), float(stats[k, cv2.CC_STAT_AREA])


def render(pid: str, amount: float | None = None, image: np.ndarray | None = None, **kw):
    image = square_photo() if image is None else image
    camera = preset_path(pid, kw.pop("num_frames", 9), amount=amount, aspect=W / H)
    return render_kenburns(image, camera, W, H, quality=kw.pop("quality", "fast"), **kw)


# ---------------------------------------------------------------------------------------------


def test_generator_contract():
    gen = KenBurnsGenerator()
    assert isinstance(gen, Generator)
    assert gen.name == "kenburns" and gen.is_ai is False and gen.camera_control is True
    assert "no AI" in gen.label
    names = [p.name for p in gen.param_specs()]
    assert names == ["width", "height", "num_frames", "fps", "plane_depth", "quality"]


@pytest.mark.parametrize("size, frames, photo", [((64, 48), 2, (100, 80)), ((200, 120), 5, (90, 300)),
                                                 ((96, 160), 7, (640, 480)), ((512, 320), 16, (512, 320))])
def test_shapes_for_sizes_and_frame_counts(size, frames, photo):
    w, h = size
    image = textured_photo(*photo)
    request = GenerateRequest(image, preset_path("orbit-left", frames, aspect=w / h),
                              params={"width": w, "height": h, "fps": 12})
    result = KenBurnsGenerator().generate(request, Progress())
    assert isinstance(result.clip, Clip)
    assert result.clip.frames.shape == (frames, h, w, 3) and result.clip.frames.dtype == np.uint8
    assert result.clip.frames.flags.c_contiguous
    assert result.clip.fps == 12
    assert result.info["size"] == [w, h] and result.info["num_frames"] == frames


def test_num_frames_param_resamples_the_path():
    request = GenerateRequest(textured_photo(300, 200), preset_path("push-in", 16, aspect=1.6),
                              params={"width": 64, "height": 40, "num_frames": 25})
    assert KenBurnsGenerator().generate(request, Progress()).clip.num_frames == 25
    with pytest.raises(InputError, match="Unknown parameter 'frames'"):
        KenBurnsGenerator().generate(GenerateRequest(textured_photo(64, 40), preset_path("static"),
                                                     params={"frames": 3}), Progress())


@pytest.mark.parametrize("quality", ["fast", "high"])
def test_deterministic_bytes(quality):
    image = textured_photo(700, 500, seed=3)
    camera = preset_path("orbit-right", 8, aspect=1.6)
    a, _ = render_kenburns(image, camera, 160, 100, quality=quality)
    b, _ = render_kenburns(image.copy(), camera, 160, 100, quality=quality)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("quality", ["fast", "high"])
def test_frame0_is_the_centre_crop(quality):
    # Same scale: the 200x200 crop of a 300x200 photo is taken from its middle, unchanged.
    image = textured_photo(300, 200, seed=1)
    frames, info = render_kenburns(image, preset_path("static", 4, aspect=1.0), 200, 200, quality=quality)
    assert info["crop_box"] == [50, 0, 250, 200]
    assert np.array_equal(frames[0], image[:, 50:250])
    # Downscaled: frame 0 equals an area-resize of the crop (up to resampling).
    image = textured_photo(640, 480, seed=2)
    frames, info = render_kenburns(image, preset_path("push-in", 4, aspect=1.6), 320, 200, quality=quality)
    assert info["crop_box"] == [0, 40, 640, 440]
    expected = cv2.resize(image[40:440], (320, 200), interpolation=cv2.INTER_AREA)
    diff = np.abs(frames[0].astype(int) - expected)
    assert diff.mean() < 0.6 and diff.max() <= 3


def test_push_in_magnifies_and_pull_out_shrinks():
    depth = 1.5
    frames, _ = render("push-in", 0.3, plane_depth=depth)
    x0, y0, a0 = bright_blob(frames[0])
    x1, y1, a1 = bright_blob(frames[-1])
    assert (x1, y1) == pytest.approx((x0, y0), abs=0.5)  # the centre stays put
    assert math.sqrt(a1 / a0) == pytest.approx(depth / (depth - 0.3), rel=0.05)
    frames, info = render("pull-out", 0.3, plane_depth=depth)
    assert info["zoom"] > 1.0  # the view zooms in to keep pulling out inside the photo
    a0 = bright_blob(frames[0])[2]
    assert math.sqrt(bright_blob(frames[-1])[2] / a0) == pytest.approx(depth / (depth + 0.3), rel=0.05)
    # The square grows steadily frame by frame.
    areas = [bright_blob(f)[2] for f in render("push-in", 0.3, plane_depth=depth)[0]]
    assert all(b >= a for a, b in zip(areas, areas[1:]))


@pytest.mark.parametrize("pid, sign", [("slide-left", +1), ("slide-right", -1)])
def test_slide_moves_content_opposite_to_the_camera(pid, sign):
    depth = 1.5
    frames, info = render(pid, None, plane_depth=depth)  # default amount: 0.2 units either way
    x0, y0, _ = bright_blob(frames[0])
    x1, y1, _ = bright_blob(frames[-1])
    assert y1 == pytest.approx(y0, abs=0.5)
    # Shifts are seen through the constant zoom that keeps the view inside the photo.
    assert x1 - x0 == pytest.approx(sign * info["zoom"] * F * 0.2 / depth, abs=1.0)


@pytest.mark.parametrize("pid, axis, sign", [("pan-left", 0, +1), ("pan-right", 0, -1),
                                             ("tilt-up", 1, +1), ("tilt-down", 1, -1)])
def test_pan_and_tilt_rotate_the_view(pid, axis, sign):
    # Turning left brings what was on the left towards the centre: content moves right.
    frames, info = render(pid, 0.1)  # 9 degrees
    start, end = bright_blob(frames[0]), bright_blob(frames[-1])
    shift = end[axis] - start[axis]
    assert shift == pytest.approx(sign * info["zoom"] * F * math.tan(math.radians(9.0)), abs=1.0)
    assert end[1 - axis] == pytest.approx(start[1 - axis], abs=0.5)


def test_pure_rotation_ignores_the_plane_depth():
    a, _ = render("pan-left", 0.1, plane_depth=0.5)
    b, _ = render("pan-left", 0.1, plane_depth=50.0)
    assert np.array_equal(a, b)
    c, _ = render("slide-left", 0.1, plane_depth=0.5)
    d, _ = render("slide-left", 0.1, plane_depth=50.0)
    assert not np.array_equal(c, d)


def test_crane_orbit_and_roll_directions():
    frames, _ = render("crane-up")  # camera rises: the room slides down the frame
    assert bright_blob(frames[-1])[1] > bright_blob(frames[0])[1] + 3
    frames, _ = render("orbit-left")  # moves left around a point ahead: the plane drifts right
    assert bright_blob(frames[-1])[0] > bright_blob(frames[0])[0] + 3
    # Roll clockwise: a square right of centre travels down (clockwise on screen).
    image = square_photo(centre=(W / 2 + 50, H / 2))
    frames, _ = render("roll-clockwise", image=image)
    assert bright_blob(frames[-1])[1] > bright_blob(frames[0])[1] + 3
    frames, _ = render("roll-counterclockwise", image=image)
    assert bright_blob(frames[-1])[1] < bright_blob(frames[0])[1] - 3


@pytest.mark.parametrize("quality", ["fast", "high"])
def test_no_black_wedges_for_any_preset_at_default_amounts(quality):
    # Photos with and without a margin around the crop; none of them contains dark pixels, so
    # any dark output pixel would be fill.
    for photo_size in [(W, H), (500, 480), (1200, 700)]:
        image = textured_photo(*photo_size, seed=5)
        assert image.min() >= 40
        for pid in PRESETS:
            camera = preset_path(pid, 6, aspect=W / H)
            frames, info = render_kenburns(image, camera, W, H, quality=quality)
            assert frames.min() >= 25, (pid, photo_size, int(frames.min()))
            assert 0.0 < info["photo_fraction_min"] <= 1.0


def test_overscan_uses_real_photo_content_beyond_the_crop():
    # A wide photo with a bright square just outside the centre crop, on the left.
    photo = np.full((160, 400, 3), BG, np.uint8)
    photo[70:90, 50:70] = FG  # crop is x in [72, 328)
    frames, info = render_kenburns(photo, preset_path("pan-left", 9, amount=0.2, aspect=1.6), W, H, quality="fast")
    # Frame 0 is the middle of the cover crop x in [72, 328), narrowed by the reported zoom.
    left, top, right, bottom = info["crop_box"]
    assert 72 <= left and right <= 328 and (left + right) / 2 == pytest.approx(200, abs=1)
    assert (right - left) == pytest.approx(256 / info["zoom"], abs=1)
    assert (frames[0][..., 0] > 150).sum() == 0
    assert (frames[-1][..., 0] > 150).sum() > 100  # panning left reveals it


def test_progress_reports_each_frame():
    calls: list[tuple[float, str]] = []
    request = GenerateRequest(textured_photo(128, 80), preset_path("push-in", 6, aspect=1.6),
                              params={"width": 64, "height": 40})
    KenBurnsGenerator().generate(request, Progress(lambda f, m: calls.append((f, m))))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert [m for _, m in calls if m.startswith("frame")] == [f"frame {i}/6" for i in range(1, 7)]


def test_cancellation_stops_between_frames():
    done: list[str] = []
    progress = Progress(lambda f, m: (done.append(m), m == "frame 2/8" and progress.cancel()))
    request = GenerateRequest(textured_photo(128, 80), preset_path("pan-left", 8, aspect=1.6),
                              params={"width": 64, "height": 40})
    with pytest.raises(Cancelled):
        KenBurnsGenerator().generate(request, progress)
    assert "frame 3/8" not in done
    pre = Progress()
    pre.cancel()
    with pytest.raises(Cancelled):
        KenBurnsGenerator().generate(request, pre)


def test_user_errors_are_one_line_input_errors():
    image = textured_photo(128, 80)
    with pytest.raises(InputError, match=r"frame \d+ looks \d+ degrees away from the photo's view"):
        render_kenburns(image, preset_path("pan-left", 5, amount=0.9, aspect=1.6), 64, 40)
    with pytest.raises(InputError, match=r"gets within .* units of the picture plane at depth 0\.5; raise 'Plane depth'"):
        render_kenburns(image, preset_path("push-in", 5, amount=0.6, aspect=1.6), 64, 40, plane_depth=0.5)
    with pytest.raises(InputError, match=r"The photo must be an RGB image \(\(H, W, 3\) uint8\), got float64 \(80, 128, 3\)"):
        render_kenburns(image.astype(float), preset_path("static"), 64, 40)
    with pytest.raises(InputError, match="Quality must be one of high, fast"):
        render_kenburns(image, preset_path("static"), 64, 40, quality="best")


def test_aspect_mismatch_is_reported():
    _, info = render_kenburns(textured_photo(128, 128), preset_path("static", aspect=1.6), 64, 64)
    assert info["warnings"] and "non-square" in info["warnings"][0]
    _, info = render_kenburns(textured_photo(128, 128), preset_path("static", aspect=1.0), 64, 64)
    assert info["warnings"] == []


# --- a preview never invents content ----------------------------------------------------------


def coordinate_photo(width: int, height: int) -> np.ndarray:
    """Red encodes x and green encodes y (both rising), blue is 0: every pixel names its place."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.round(np.linspace(0, 255, width))[None, :]
    img[..., 1] = np.round(np.linspace(0, 255, height))[:, None]
    return img


def folds(frame: np.ndarray, tol: int = 3, k: int = 8) -> int:
    """Rows and columns where a coordinate channel goes both up and down: a mirrored copy.

    A camera inside the photo sees each output row/column as a straight line across the photo,
    along which both coordinates change monotonically; a reflection at the photo's edge folds it
    back. Compares pixels `k` apart (neighbours differ by less than the tolerance). Pixels of
    (or next to) the grey outside fill (blue > 0) are left out.
    """
    photo = cv2.erode((frame[..., 2] == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    count = 0
    for axis in (0, 1):  # along columns, then along rows
        for ch in (0, 1):
            c = frame[..., ch].astype(int)
            if axis == 0:
                d, ok = c[k:] - c[:-k], photo[k:] & photo[:-k]
            else:
                d, ok = c[:, k:] - c[:, :-k], photo[:, k:] & photo[:, :-k]
            up = ((d > tol) & ok).any(axis=axis)
            down = ((d < -tol) & ok).any(axis=axis)
            count += int((up & down).sum())
    return count


def test_fold_detector_sees_a_mirror():
    photo = coordinate_photo(W, H)
    assert folds(photo) == 0
    mirrored = np.concatenate([photo[:, : W // 2], photo[:, : W // 2][:, ::-1]], axis=1)
    assert folds(mirrored) >= H
    reflect = cv2.copyMakeBorder(photo, 20, 20, 20, 20, cv2.BORDER_REFLECT_101)
    assert folds(reflect) > 0


@pytest.mark.parametrize("quality", ["fast", "high"])
@pytest.mark.parametrize("photo_size", [(W, H), (400, 300), (640, 200)])
def test_no_preset_shows_content_from_outside_the_photo(quality, photo_size):
    # Every preset at its default amount (pans, tilts, rolls, pull-out included): each output
    # pixel is either the photo seen by a camera that stays inside it (no folded, mirrored
    # copies), or the labelled grey outside fill, which the info reports.
    image = coordinate_photo(*photo_size)
    for pid in PRESETS:
        frames, info = render_kenburns(image, preset_path(pid, 6, aspect=W / H), W, H, quality=quality)
        assert 1.0 <= info["zoom"] <= 2.0 and "zoomed in" in info["framing"] or info["zoom"] == 1.0
        for i, frame in enumerate(frames):
            assert folds(frame) == 0, (pid, i)
            fill = frame[..., 2] > 0
            if info["outside_fraction_max"] == 0.0:
                assert not fill.any(), (pid, i)
            else:
                # Fill pixels are the neutral grey hatch (their rim blends with the photo's edge).
                core = cv2.erode(fill.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                grey = (frame[core] == (128, 128, 128)).all(-1) | (frame[core] == (150, 150, 150)).all(-1)
                assert grey.all(), (pid, i)
        if info["outside_fraction_max"] > 0.0:
            assert any("grey hatching" in w for w in info["warnings"]), pid


def test_zoom_is_the_least_that_keeps_the_camera_inside():
    image = coordinate_photo(W, H)
    frames, info = render_kenburns(image, preset_path("roll-clockwise", 6, aspect=W / H), W, H, quality="fast")
    zoom = info["zoom"]
    assert 1.0 < zoom < 2.0 and info["outside_fraction_max"] == 0.0
    assert f"{zoom:.2f}x" in info["framing"]
    # The worst frame touches the photo's edge: some corner pixel sits at a photo border.
    edges = []
    for f in frames:
        for y, x in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
            r, g = int(f[y, x, 0]), int(f[y, x, 1])
            edges.append(min(r, 255 - r, g, 255 - g))
    assert min(edges) <= 2
    # A static camera needs no zoom and frame 0 is the photo itself.
    frames, info = render_kenburns(image, preset_path("static", 3, aspect=W / H), W, H, quality="fast")
    assert info["zoom"] == 1.0 and np.array_equal(frames[0], image)


def test_a_move_beyond_the_photo_is_filled_and_labelled():
    # A 30-degree pan cannot be shown from this photo even zoomed in 2x.
    image = coordinate_photo(W, H)
    frames, info = render_kenburns(image, preset_path("pan-left", 6, amount=0.33, aspect=W / H), W, H)
    assert info["zoom"] == 2.0 and info["outside_fraction_max"] > 0.05
    assert "grey hatching" in info["warnings"][-1]
    assert (frames[0][..., 2] == 0).all()  # frame 0 is all photo
    assert (frames[-1][..., 2] > 0).mean() == pytest.approx(info["outside_fraction_max"], abs=0.02)
