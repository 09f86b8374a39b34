"""core.video: writers (atomic, even sizes), readers, and the user-photo loader's edge cases."""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from core import video as V
from core.clip import Clip
from core.errors import Cancelled, InputError
from core.progress import Progress


def _smooth_clip(t: int = 6, h: int = 48, w: int = 64, fps: float = 8.0) -> Clip:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = [
        np.stack([xx * 3 + i * 4, yy * 4, 128 + 60 * np.sin((xx + yy + i) / 8.0)], axis=-1)
        for i in range(t)
    ]
    return Clip(np.clip(np.stack(frames), 0, 255).astype(np.uint8), fps)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- mp4


def test_mp4_round_trip(tmp_path):
    clip = _smooth_clip(fps=7.5)
    info = V.write_mp4(clip, tmp_path / "a.mp4")
    assert (info.width, info.height, info.num_frames, info.cropped) == (64, 48, 6, (0, 0))
    assert info.bytes == (tmp_path / "a.mp4").stat().st_size > 0
    back = V.read_video(tmp_path / "a.mp4")
    assert back.frames.shape == clip.frames.shape
    assert back.fps == pytest.approx(7.5)
    assert _psnr(back.frames, clip.frames) > 35  # crf 18 on smooth content
    assert _leftovers(tmp_path) == []
    with open(tmp_path / "a.mp4", "rb") as fh:
        assert fh.read(12)[4:8] == b"ftyp"


def test_mp4_odd_size_is_cropped_by_one_pixel_and_recorded(tmp_path):
    clip = _smooth_clip(t=3, h=33, w=47)
    info = V.write_mp4(clip, tmp_path / "odd.mp4", fps=10)
    assert (info.width, info.height, info.cropped, info.fps) == (46, 32, (1, 1), 10.0)
    back = V.read_video(tmp_path / "odd.mp4")
    assert back.frames.shape == (3, 32, 46, 3) and back.fps == pytest.approx(10)
    # Cropped, not resampled: the kept pixels line up with the source.
    assert _psnr(back.frames, clip.frames[:, :32, :46]) > 33


def test_mp4_cancel_mid_write_leaves_nothing(tmp_path):
    cancel = threading.Event()
    calls = []

    def fn(frac, msg):
        calls.append(frac)
        if len(calls) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        V.write_mp4(_smooth_clip(t=8), tmp_path / "c.mp4", progress=Progress(fn, cancel))
    assert list(tmp_path.iterdir()) == []


def test_mp4_rejects_bad_settings(tmp_path):
    with pytest.raises(InputError, match="crf"):
        V.write_mp4(_smooth_clip(t=2), tmp_path / "x.mp4", crf=60)
    with pytest.raises(InputError, match="fps"):
        V.write_mp4(_smooth_clip(t=2), tmp_path / "x.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- png / gif


def test_png_frames_round_trip_exact(tmp_path):
    clip = _smooth_clip(t=4, h=21, w=35, fps=12.0)
    info = V.write_png_frames(clip, tmp_path / "frames")
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["frame-0000.png", "frame-0001.png", "frame-0002.png", "frame-0003.png", "frames.json"]
    back = V.read_video(tmp_path / "frames")
    assert np.array_equal(back.frames, clip.frames) and back.fps == 12.0
    assert info.num_frames == 4 and _leftovers(tmp_path) == []
    with pytest.raises(InputError, match="not an empty folder"):
        V.write_png_frames(clip, tmp_path / "frames")


def test_png_write_failure_leaves_no_folder(tmp_path, monkeypatch):
    real = cv2.imencode
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise OSError("simulated write failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(V.cv2, "imencode", flaky)
    with pytest.raises(OSError, match="simulated"):
        V.write_png_frames(_smooth_clip(t=5), tmp_path / "frames")
    assert list(tmp_path.iterdir()) == []


def test_gif_round_trip(tmp_path):
    clip = _smooth_clip(t=5, fps=10.0)
    info = V.write_gif(clip, tmp_path / "a.gif")
    back = V.read_video(tmp_path / "a.gif")
    assert back.frames.shape == clip.frames.shape
    assert back.fps == pytest.approx(10.0) and info.fps == pytest.approx(10.0)
    assert _psnr(back.frames, clip.frames) > 25  # 256-colour palette
    # Identical frames are merged by the encoder and expanded again on reading.
    still = Clip(np.repeat(clip.frames[:1], 4, axis=0), 8.0)
    V.write_gif(still, tmp_path / "still.gif")
    again = V.read_video(tmp_path / "still.gif")
    assert again.num_frames == 4 and again.fps == pytest.approx(1000 / 120)


def test_read_video_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        V.read_video(tmp_path / "missing.mp4")
    (tmp_path / "fake.mp4").write_bytes(b"this is not a video at all")
    with pytest.raises(InputError, match="fake.mp4"):
        V.read_video(tmp_path / "fake.mp4")
    (tmp_path / "clip.xyz").write_bytes(b"x")
    with pytest.raises(InputError, match="Unsupported"):
        V.read_video(tmp_path / "clip.xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames"):
        V.read_video(tmp_path / "empty")


# --------------------------------------------------------------------------- load_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_load_rgb_png_exact_from_path_and_bytes(tmp_path):
    arr = _smooth_clip(t=1, h=30, w=50).frames[0]
    data = _encode(Image.fromarray(arr), "PNG")
    (tmp_path / "p.png").write_bytes(data)
    for src in (data, tmp_path / "p.png", str(tmp_path / "p.png")):
        out = V.load_image(src)
        assert out.dtype == np.uint8 and out.flags.c_contiguous and np.array_equal(out, arr)


def test_load_exif_rotated_jpeg_is_upright():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:6, :6] = 255  # marker in the stored image's top-left corner
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = V.load_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20, 3)
    assert out[:4, -4:].mean() > 240 and out[:4, :4].mean() < 15  # marker now top-right


def test_load_cmyk_jpeg():
    img = Image.new("CMYK", (24, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = V.load_image(_encode(img, "JPEG", quality=95))
    assert out.shape == (16, 24, 3)
    assert out[8, 12, 0] > 230 and out[8, 12, 1:].max() < 25


def test_load_16bit_grey_png_scales_to_8bit():
    a = np.linspace(0, 65535, 32 * 16).reshape(16, 32).astype(np.uint16)
    out = V.load_image(_encode(Image.fromarray(a), "PNG"))
    expected = np.rint(a / 257.0).astype(np.uint8)
    assert out.shape == (16, 32, 3)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)
    assert out.max() == 255  # not clipped at 255 of 65535


def test_load_16bit_rgb_png_keeps_the_high_byte():
    rgb16 = np.random.default_rng(0).integers(0, 65536, (12, 20, 3), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", rgb16[..., ::-1])
    out = V.load_image(enc.tobytes())
    assert np.abs(out.astype(int) - np.rint(rgb16 / 257.0)).max() <= 1


def test_load_rgba_composites_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :5, 3] = 255  # left half opaque red
    rgba[:, 5:, 3] = 0  # right half fully transparent
    out = V.load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 9].tolist() == [255, 255, 255]
    la = Image.fromarray(np.dstack([np.full((4, 4), 0, np.uint8), np.full((4, 4), 128, np.uint8)]), "LA")
    assert V.load_image(_encode(la, "PNG"))[0, 0].tolist() == [127, 127, 127]


def test_load_grey_and_palette():
    grey = Image.fromarray(np.full((8, 9), 77, np.uint8), "L")
    assert V.load_image(_encode(grey, "PNG"))[3, 3].tolist() == [77, 77, 77]
    pal = Image.new("P", (6, 5))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putdata([1] * 30)
    assert V.load_image(_encode(pal, "PNG"))[2, 2].tolist() == [10, 200, 30]
    pal.info["transparency"] = 1
    assert V.load_image(_encode(pal, "PNG", transparency=1))[2, 2].tolist() == [255, 255, 255]


def test_load_rejects_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="empty"):
        V.load_image(b"")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match="zero.png is empty"):
        V.load_image(tmp_path / "zero.png")
    with pytest.raises(InputError, match="not an image"):
        V.load_image(b"%PDF-1.7 definitely not a picture")
    jpeg = _encode(Image.fromarray(_smooth_clip(t=1, h=64, w=64).frames[0]), "JPEG", quality=90)
    with pytest.raises(InputError, match="truncated"):
        V.load_image(jpeg[: len(jpeg) // 2])
    big = _encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(InputError, match="MP"):
        V.load_image(big, max_megapixels=0.1)
    with pytest.raises(InputError, match="limit is"):
        V.load_image(big, max_bytes=100)
    with pytest.raises(InputError, match="not found"):
        V.load_image(tmp_path / "nope.jpg")
    assert V.load_image(big, max_megapixels=0.2).shape == (300, 400, 3)
