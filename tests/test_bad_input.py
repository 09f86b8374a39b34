"""Bad input end to end: every case is one clear line, the app keeps serving, and nothing already
produced is lost. Through the service object on the embedded generator (CPU, no weights), and
for uploads and a broken models.json through the running dashboard (gradio_client)."""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import CheckpointError, InputError, OutOfMemory, Unavailable, WeightsMissing
from core.runs import OutOfDiskSpace
from core.service import CameraSpec, JobRequest, Studio, StudioSettings
from core.video import read_video
from tests.dashboard import running_dashboard

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 96, "height": 64, "num_frames": 8}


# -- helpers ---------------------------------------------------------------------------------

def photo(h=80, w=120, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, ((xx // 10 + yy // 10) % 2) * 200], -1)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height RGB, with a tiny IDAT: what a
    decompression bomb looks like before any pixel is decoded (no large allocation here)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_studio(tmp_path: Path, **kw) -> Studio:
    settings = dict(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json", min_free_bytes=0,
                    device="cpu")
    settings.update(kw)
    registry = settings.pop("registry", None)
    return Studio(StudioSettings(**settings), registry=registry)


@pytest.fixture()
def studio(tmp_path) -> Studio:
    return make_studio(tmp_path)


def run_collect(studio: Studio, request: JobRequest, **kw) -> tuple[list, BaseException | None]:
    """All events of a job and the exception that ended it (None when it completed)."""
    events = []
    try:
        for ev in studio.run_job(request, **kw):
            events.append(ev)
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        return events, exc
    return events, None


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def assert_still_serves(studio: Studio) -> None:
    events, exc = run_collect(studio, JobRequest(photo(seed=9), params=SMALL, chains=("none",)))
    assert exc is None, exc
    assert studio.open_run(events[0].run_id).status == "complete"


def assert_consistent_run_folder(run_dir: Path, num_frames: int) -> dict:
    """Nothing half-written that looks complete: no temporary files, every visible file is the
    one run.json records (same size), and every recorded mp4 decodes to all its frames."""
    data = json.loads((run_dir / "run.json").read_text())
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".") or ".part" in p.name]
    visible = {p.name for p in run_dir.iterdir()} - {"run.json"}
    assert visible == set(data["files"]), (visible, data["files"])
    for rel, size in data["files"].items():
        p = run_dir / rel
        if p.is_file():
            assert p.stat().st_size == size, rel
        if rel.endswith(".mp4"):
            assert read_video(p).num_frames == num_frames, rel
    return data


# -- uploads ---------------------------------------------------------------------------------

def _bad_uploads() -> dict[str, bytes]:
    png = encode(Image.fromarray(photo()), "PNG")
    jpg = encode(Image.fromarray(photo()), "JPEG", quality=90)
    return {
        "text": b"this is not a picture, just some words\n" * 5,
        "empty": b"",
        "truncated-png": png[: len(png) // 2],
        "truncated-jpeg": jpg[: len(jpg) // 2],
        "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
    }


@pytest.mark.parametrize("case", list(_bad_uploads()))
def test_non_image_empty_and_truncated_uploads_are_one_line_errors(studio, tmp_path, case):
    data = _bad_uploads()[case]
    f = tmp_path / "room.png"
    f.write_bytes(data)
    for source in (data, f):
        with pytest.raises(InputError) as exc:
            studio.load_image(source)
        msg = one_line(exc.value)
        assert any(w in msg for w in ("not an image", "empty (0 bytes)", "damaged or truncated")), msg
    assert "room.png" in str(exc.value)  # a file is named in the message
    assert studio.list_runs() == []
    assert_still_serves(studio)


def test_decompression_bomb_is_refused_from_its_header(studio):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(InputError) as exc:
        studio.load_image(png_header_only(20000, 20000))
    assert "too large" in one_line(exc.value) or "limit" in str(exc.value)
    # 48 MP: under PIL's own bomb threshold, over our 40 MP limit
    with pytest.raises(InputError, match=r"8000x6000 \(48\.0 MP\); the limit is 40 MP"):
        studio.load_image(png_header_only(8000, 6000))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"decoding was attempted: peak memory grew by {grown_mib:.0f} MiB"
    small = make_studio(studio.settings.root, outputs=studio.settings.outputs, max_image_bytes=1000)
    with pytest.raises(InputError, match="the limit is 0 MB"):
        small.load_image(encode(Image.fromarray(photo()), "PNG"))
    assert_still_serves(studio)


def test_extreme_aspect_ratio_is_refused_before_a_run_exists(studio):
    strip = np.full((16, 400, 3), 128, np.uint8)  # 25:1; covering 96x64 would need a 2400-row strip per 16 px
    events, exc = run_collect(studio, JobRequest(strip, params=SMALL))
    assert isinstance(exc, InputError) and "400x16" in one_line(exc) and events == []
    assert studio.list_runs() == []


# -- photo modes: handled correctly, never refused ---------------------------------------------

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(h: int, w: int, tl, tr, bl, br) -> np.ndarray:
    a = np.empty((h, w, len(tl)), np.uint8)
    a[: h // 2, : w // 2], a[: h // 2, w // 2:], a[h // 2:, : w // 2], a[h // 2:, w // 2:] = tl, tr, bl, br
    return a


def quadrant_means(frame: np.ndarray) -> list[np.ndarray]:
    """Mean colour of the inner half of each quadrant (TL, TR, BL, BR), away from edges."""
    h, w = frame.shape[:2]
    out = []
    for y0 in (0, h // 2):
        for x0 in (0, w // 2):
            q = frame[y0 + h // 8: y0 + 3 * h // 8, x0 + w // 8: x0 + 3 * w // 8]
            out.append(q.reshape(-1, 3).mean(0))
    return out


def _exif_rotated(orientation: int, k_stored: int) -> bytes:
    shown = quadrants(80, 120, RED, GREEN, BLUE, WHITE)
    stored = np.ascontiguousarray(np.rot90(shown, k_stored))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())


def _cmyk() -> bytes:
    a = quadrants(80, 120, (0, 255, 255, 0), (255, 0, 255, 0), (255, 255, 0, 0), (0, 0, 0, 0))
    return encode(Image.fromarray(a, "CMYK"), "JPEG", quality=95)


def _grey16() -> bytes:
    a = np.empty((80, 120), np.uint16)
    a[:40, :60], a[:40, 60:], a[40:, :60], a[40:, 60:] = 0, 21845, 43690, 65535
    return encode(Image.fromarray(a, "I;16"), "PNG")


def _rgb48() -> bytes:
    import cv2

    a = quadrants(80, 120, RED, GREEN, BLUE, WHITE).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a[..., ::-1]))
    assert ok
    return buf.tobytes()


def _rgba() -> bytes:
    a = quadrants(80, 120, (255, 0, 0, 255), (0, 255, 0, 0), (0, 0, 255, 128), (255, 255, 255, 255))
    return encode(Image.fromarray(a, "RGBA"), "PNG")


def _grey8() -> bytes:
    a = quadrants(80, 120, (0,), (85,), (170,), (255,))[..., 0]
    return encode(Image.fromarray(a, "L"), "PNG")


def _palette_transparent() -> bytes:
    im = Image.fromarray(quadrants(80, 120, RED, GREEN, BLUE, WHITE)).quantize(4)
    # make the palette entry of the top-right (green) quadrant transparent
    im.info["transparency"] = im.getpixel((100, 10))
    return encode(im, "PNG", transparency=im.getpixel((100, 10)))


HALF_BLUE = (127, 127, 255)  # 50 % blue over white
PHOTO_MODES = {
    # name: (file bytes, expected displayed TL, TR, BL, BR)
    "exif-6": (lambda: _exif_rotated(6, 1), (RED, GREEN, BLUE, WHITE)),
    "exif-3": (lambda: _exif_rotated(3, 2), (RED, GREEN, BLUE, WHITE)),
    "exif-8": (lambda: _exif_rotated(8, -1), (RED, GREEN, BLUE, WHITE)),
    "cmyk-jpeg": (_cmyk, (RED, GREEN, BLUE, WHITE)),
    "grey-16bit": (_grey16, ((0,) * 3, (85,) * 3, (170,) * 3, WHITE)),
    "rgb-48bit": (_rgb48, (RED, GREEN, BLUE, WHITE)),
    "rgba": (_rgba, (RED, WHITE, HALF_BLUE, WHITE)),
    "grey-8bit": (_grey8, ((0,) * 3, (85,) * 3, (170,) * 3, WHITE)),
    "palette-transparency": (_palette_transparent, (RED, WHITE, BLUE, WHITE)),
}


@pytest.mark.parametrize("mode", list(PHOTO_MODES))
def test_photo_modes_give_upright_true_colour_clips(studio, mode):
    make, expected = PHOTO_MODES[mode]
    data = make()
    image = studio.load_image(data)
    assert image.shape == (80, 120, 3) and image.dtype == np.uint8  # displayed orientation: landscape
    for got, want in zip(quadrant_means(image), expected):
        assert np.abs(got - want).max() <= 12, (mode, "decoded", got.round(), want)
    # the generated clip's first frame (the photo's own view) keeps orientation and colour
    events, exc = run_collect(studio, JobRequest(image, image_bytes=data, params=SMALL, chains=("none",)))
    assert exc is None, exc
    first = read_video(events[1].video, max_frames=1).frames[0]
    assert first.shape == (64, 96, 3)
    for got, want in zip(quadrant_means(first), expected):
        assert np.abs(got - want).max() <= 14, (mode, "frame 0", got.round(), want)
    data_json = studio.open_run(events[0].run_id).data
    assert data_json["input"]["width"] in (120, 80) and data_json["input"]["bytes"] == len(data)


# -- camera paths ------------------------------------------------------------------------------

def _re10k(studio: Studio, row: int, field: int, value: str) -> str:
    lines = studio.camera_path(CameraSpec(preset="slide-left")).to_realestate10k().splitlines()
    parts = lines[row].split()
    parts[field] = value
    lines[row] = " ".join(parts)
    return "\n".join(lines) + "\n"


def _bad_cameras(studio: Studio) -> dict[str, tuple[CameraSpec, str]]:
    kf0 = {"time": 0, "position": [0, 0, 0]}
    return {
        "keyframe-nan": (CameraSpec(mode="keyframes", keyframes=(kf0, {"time": 1, "position": [float("nan"), 0, 0]})),
                         "finite"),
        "keyframe-nan-angle": (CameraSpec(mode="keyframes", keyframes=(kf0, {"time": 1, "yaw": float("inf")})),
                               "finite"),
        "keyframe-absurd": (CameraSpec(mode="keyframes", keyframes=(kf0, {"time": 1, "position": [1e9, 0, 0]})),
                            "units away"),
        "re10k-nan": (CameraSpec(mode="file", text=_re10k(studio, 3, 10, "nan")), "not a finite number"),
        "re10k-absurd-translation": (CameraSpec(mode="file", text=_re10k(studio, 3, 10, "1e12")), "absurd"),
        "re10k-garbage": (CameraSpec(mode="file", text="hello\nworld 1 2 3\n"), "expected 19 numbers"),
        "re10k-distance-nan": (CameraSpec(mode="file", text=_re10k(studio, 3, 10, "0.1"), distance=float("nan")),
                               "distance"),
        "preset-amount-inf": (CameraSpec(preset="push-in", amount=float("inf")), "amount"),
        "waypoint-nan": (CameraSpec(mode="waypoints", waypoints=((float("nan"), 0.5),)), "Waypoint 1"),
    }


def test_nan_and_absurd_camera_paths_are_refused_before_a_run_exists(studio):
    for case, (spec, words) in _bad_cameras(studio).items():
        events, exc = run_collect(studio, JobRequest(photo(), spec, params=SMALL))
        assert isinstance(exc, InputError), (case, exc)
        assert words.lower() in one_line(exc).lower(), (case, str(exc))
        assert events == [], case
    assert studio.list_runs() == []
    assert_still_serves(studio)


# -- models.json -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['{"models": {', '{"models": {"x": {"kind": "generator"}}}', "[1, 2]"])
def test_broken_models_json_keeps_the_builtins(tmp_path, text):
    reg = tmp_path / "models.json"
    reg.write_text(text)
    s = make_studio(tmp_path, models=reg)
    (msg,) = s.startup_messages()
    assert "models.json" in msg and "built-in" in msg and "\n" not in msg
    assert {i.name for i in s.model_infos() if i.available} >= {"kenburns", "nlmeans", "lanczos"}
    assert_still_serves(s)


# -- checkpoints (FastDVDnet, tiny preset) -----------------------------------------------------

def _fastdvdnet_studio(tmp_path: Path) -> tuple[Studio, Path]:
    from core.registry import Registry

    ckpt = tmp_path / "ckpts" / "fastdvdnet" / "model.pth"
    reg = Registry.from_dict({"models": {
        "kenburns": {"kind": "generator", "variant": "kenburns", "label": "Ken Burns"},
        "nlmeans": {"kind": "denoiser", "variant": "nlmeans", "label": "NL-means"},
        "lanczos": {"kind": "upscaler", "variant": "lanczos", "label": "Lanczos"},
        "fastdvdnet": {"kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
                       "options": {"preset": "tiny"},
                       "files": [{"role": "checkpoint", "path": "ckpts/fastdvdnet/model.pth",
                                  "url": "https://example.org/fastdvdnet/model.pth"}]},
    }}, root=tmp_path)
    return make_studio(tmp_path, registry=reg), ckpt


def _release_state(seed: int = 0) -> dict:
    import torch

    from core.models.fastdvdnet import PRESETS, FastDVDnet, checkpoint_key_map

    torch.manual_seed(seed)
    model = FastDVDnet(PRESETS["tiny"]).eval()
    kmap = checkpoint_key_map()
    return {"module." + kmap[k]: v.clone() for k, v in model.state_dict().items()}


def tiny_clip():
    """Three identical 48x32 frames."""
    from core.clip import Clip

    return Clip(np.repeat(photo(32, 48)[None], 3, 0), 8.0)


FASTDVDNET_JOB = dict(params=SMALL, chains=("none", "denoise"), roles={"denoise": "fastdvdnet"})


def test_checkpoint_missing_truncated_and_wrong_variant(tmp_path):
    import torch

    studio, ckpt = _fastdvdnet_studio(tmp_path)

    # missing: refused up front with the path and the fetch command; no run is started
    events, exc = run_collect(studio, JobRequest(photo(), **FASTDVDNET_JOB))
    assert isinstance(exc, Unavailable) and events == []
    msg = one_line(exc)
    assert str(ckpt) in msg and "python -m core.weights fetch fastdvdnet" in msg
    # the stage itself raises the standard WeightsMissing line: file, command and path
    with pytest.raises(WeightsMissing) as wm:
        studio.stage("fastdvdnet").process(tiny_clip(), {}, None)
    assert "model.pth" in one_line(wm.value) and str(ckpt) in str(wm.value)
    assert "python -m core.weights fetch fastdvdnet" in str(wm.value)
    assert studio.list_runs() == []

    # truncated: CheckpointError, the raw chain is kept, the run is failed
    ckpt.parent.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save(_release_state(), buf)
    ckpt.write_bytes(buf.getvalue()[: buf.tell() // 2])
    events, exc = run_collect(studio, JobRequest(photo(), **FASTDVDNET_JOB))
    assert isinstance(exc, CheckpointError), exc
    assert "truncated or corrupt" in one_line(exc) and str(ckpt) in str(exc)
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and "truncated or corrupt" in run.data["error"]
    assert [e.chain for e in events if e.chain] == ["none"] and events[1].video.is_file()
    assert_consistent_run_folder(run.dir, SMALL["num_frames"])

    # wrong variant: the keys that are missing and unexpected are listed
    state = _release_state()
    for k in [k for k in state if ".temp2." in k][:3]:
        state[k.replace(".temp2.", ".temp3.")] = state.pop(k)
    torch.save(state, ckpt)
    events, exc = run_collect(studio, JobRequest(photo(), **FASTDVDNET_JOB))
    assert isinstance(exc, CheckpointError), exc
    msg = one_line(exc)
    assert "missing 3 key(s)" in msg and "unexpected 3 key(s)" in msg and "temp3." in msg
    assert studio.open_run(events[0].run_id).status == "failed"

    # the app keeps serving, and a good file works at once (no failure was cached)
    assert_still_serves(studio)
    torch.save(_release_state(), ckpt)
    events, exc = run_collect(studio, JobRequest(photo(), **FASTDVDNET_JOB))
    assert exc is None, exc
    assert [e.chain for e in events if e.chain] == ["none", "denoise"]


# -- out of memory -----------------------------------------------------------------------------

def _oom_kenburns(monkeypatch, fail_times: int, exc_factory):
    from core.generators.kenburns import KenBurnsGenerator

    real = KenBurnsGenerator.generate
    calls = {"n": 0}

    def generate(self, request, progress=None):
        calls["n"] += 1
        if calls["n"] <= fail_times:
            progress(0.3, "working")
            raise exc_factory()
        return real(self, request, progress)

    monkeypatch.setattr(KenBurnsGenerator, "generate", generate)
    return calls


def test_oom_while_generating_is_reported_with_what_to_lower(studio, monkeypatch):
    import torch

    assert studio._manager is None and studio.device == "cpu"  # the path that bypasses the manager
    calls = _oom_kenburns(monkeypatch, 1, lambda: torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total capacity)"))
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL))
    assert isinstance(exc, OutOfMemory), exc
    msg = one_line(exc)
    assert "generating with" in msg and "lower the resolution" in msg and "number of frames" in msg
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and run.data["error"] == msg
    assert calls["n"] == 1  # nothing to evict, so no blind retry
    assert_still_serves(studio)


def test_oom_in_a_later_chain_keeps_the_earlier_chains(studio, monkeypatch):
    from core.postprocess.classical import NLMeansDenoise

    def process(self, clip, params, progress):
        progress(0.1, "nlmeans frame 1")
        raise RuntimeError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(NLMeansDenoise, "process", process)
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL, chains=("none", "upscale", "denoise"),
                                                 stage_params={"lanczos": {"scale": 2}}))
    assert isinstance(exc, OutOfMemory), exc
    assert "post-processing" in one_line(exc) and "lower" in str(exc)
    assert [e.chain for e in events if e.chain] == ["none", "upscale"]
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and "Ran out of" in run.data["error"]
    data = assert_consistent_run_folder(run.dir, SMALL["num_frames"])
    assert data["chains"]["none"]["files"]["mp4"] and data["chains"]["upscale"]["files"]["mp4"]


def test_oom_with_resident_models_evicts_them_and_retries_once(tmp_path, monkeypatch):
    import torch

    from core.manager import ModelManager

    manager = ModelManager("cpu", budget_bytes=1 << 30)
    manager.get("idle-model", lambda device: torch.nn.Linear(64, 64))
    studio = make_studio(tmp_path)
    studio._manager = manager
    calls = _oom_kenburns(monkeypatch, 1, lambda: RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL))
    assert exc is None, exc
    assert calls["n"] == 2 and not manager.is_resident("idle-model")
    assert studio.open_run(events[0].run_id).status == "complete"
    # a failure that persists after the eviction: OutOfMemory saying so
    manager.get("idle-model", lambda device: torch.nn.Linear(64, 64))
    calls = _oom_kenburns(monkeypatch, 5, lambda: RuntimeError("CUDA out of memory."))
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL))
    assert isinstance(exc, OutOfMemory) and "even after unloading the other models" in one_line(exc)


# -- full disk ---------------------------------------------------------------------------------

def test_full_disk_before_the_run_starts(tmp_path):
    studio = make_studio(tmp_path, min_free_bytes=256 * 1024**2, free_space_fn=lambda path: 100 * 1024**2)
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL))
    assert isinstance(exc, OutOfDiskSpace) and events == []
    msg = one_line(exc)
    assert "Not enough disk space" in msg and "100 MB free" in msg and str(tmp_path / "out") in msg
    assert not (tmp_path / "out").exists() or studio.list_runs() == []


def test_disk_filling_up_between_chains_keeps_the_earlier_ones(tmp_path):
    out = tmp_path / "out"

    def free(path: Path) -> int:  # plenty until the first chain's video exists, then nearly nothing
        return 10**12 if not list(out.glob("*/chain-00.mp4")) else 50 * 1024**2

    studio = make_studio(tmp_path, min_free_bytes=256 * 1024**2, free_space_fn=free)
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL, chains=("none", "upscale")))
    assert isinstance(exc, OutOfDiskSpace), exc
    assert "chain 'upscale'" in one_line(exc) and "50 MB free" in str(exc)
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and "Not enough disk space" in run.data["error"]
    data = assert_consistent_run_folder(run.dir, SMALL["num_frames"])
    assert set(data["files"]) >= {"chain-00.mp4", "camera.json"} and "chain-01.mp4" not in data["files"]


def test_enospc_while_writing_a_chain_video(studio, monkeypatch):
    import imageio.v2 as imageio

    real = imageio.get_writer
    opened = {"n": 0}

    class FillsUp:
        """The real ffmpeg writer, until the disk 'fills' after two frames of the second video."""

        def __init__(self, writer, fail: bool):
            self.writer, self.fail, self.frames = writer, fail, 0

        def append_data(self, frame):
            self.frames += 1
            if self.fail and self.frames > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.writer.append_data(frame)

        def close(self):
            self.writer.close()

    def get_writer(*args, **kw):
        opened["n"] += 1
        return FillsUp(real(*args, **kw), fail=opened["n"] == 2)

    monkeypatch.setattr(imageio, "get_writer", get_writer)
    events, exc = run_collect(studio, JobRequest(photo(), params=SMALL, chains=("none", "upscale"),
                                                 stage_params={"lanczos": {"scale": 2}}))
    assert isinstance(exc, OutOfDiskSpace), exc
    msg = one_line(exc)
    assert "disk is full while writing chain-01.mp4" in msg and "earlier files were kept" in msg
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and "disk is full" in run.data["error"]
    data = assert_consistent_run_folder(run.dir, SMALL["num_frames"])
    assert "chain-00.mp4" in data["files"] and "chain-01.mp4" not in data["files"]
    assert "mp4" not in data["chains"]["upscale"]["files"]
    monkeypatch.undo()
    assert_still_serves(studio)


# -- cancel ------------------------------------------------------------------------------------

def test_cancel_mid_chain_leaves_only_complete_files(studio):
    job = studio.new_job_id()
    seen: list[str] = []

    def progress(frac, msg):
        seen.append(msg)
        if "nlmeans frame 3/" in msg:
            studio.cancel(job)

    n = 12
    events, exc = run_collect(studio, JobRequest(photo(), params={**SMALL, "num_frames": n},
                                                 chains=("none", "upscale", "denoise"),
                                                 stage_params={"lanczos": {"scale": 2}}),
                              progress=progress, job_id=job)
    assert type(exc).__name__ == "Cancelled", exc
    assert any("nlmeans frame 3/" in m for m in seen)
    assert not any("nlmeans frame 4/" in m for m in seen)  # stopped at the next step
    run = studio.open_run(events[0].run_id)
    assert run.status == "cancelled"
    data = assert_consistent_run_folder(run.dir, n)
    assert [e.chain for e in events if e.chain] == ["none", "upscale"]
    assert not data["chains"].get("denoise", {}).get("files")
    assert "metrics.json" not in data["files"]  # the summary of a complete run only
    assert_still_serves(studio)


# -- through the running dashboard -------------------------------------------------------------

def test_bad_uploads_through_the_api_keep_the_server_serving(live_server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(live_server["url"], verbose=False)
    before = set(os.listdir(live_server["outputs"])) if live_server["outputs"].exists() else set()
    cases = {"notes.png": b"just text, not a picture\n", "empty.png": b"",
             "cut.png": encode(Image.fromarray(photo()), "PNG")[:300], "bomb.png": png_header_only(20000, 20000)}
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(Exception) as exc:
            client.predict(handle_file(str(f)), "kenburns", "push-in", ["none"], 1, "", SMALL,
                           api_name="/walkthrough")
        text = str(exc.value)
        assert any(w in text for w in ("not an image", "empty (0 bytes)", "damaged or truncated", "too large")), \
            (name, text)
        assert "Traceback" not in text
    after = set(os.listdir(live_server["outputs"])) if live_server["outputs"].exists() else set()
    assert {d for d in after - before if d[:8].isdigit()} == set()  # no run was started for them
    good = tmp_path / "good.png"
    Image.fromarray(photo()).save(good)
    out = client.predict(handle_file(str(good)), "kenburns", "push-in", ["none"], 3, "", SMALL,
                         api_name="/walkthrough")
    assert Path(out["chains"]["none"]["video"]).is_file()


def test_app_starts_with_a_broken_models_json_and_shows_why(tmp_path):
    from gradio_client import Client, handle_file

    reg = tmp_path / "models.json"
    reg.write_text('{"schema": 1, "models": {"cami2v-512": {"kind": "generator", "variant": ')
    with running_dashboard(tmp_path, "--models", str(reg)) as server:
        url, log = server["url"], server["log"]
        config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
        warning = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and "models.json" in warning[0] and "built-in" in warning[0]
        assert "Only the built-in models" in config  # the banner on the page
        img = tmp_path / "room.png"
        Image.fromarray(photo()).save(img)
        out = Client(url, verbose=False).predict(handle_file(str(img)), "kenburns", "push-in", ["none"], 0, "",
                                                 SMALL, api_name="/walkthrough")
        assert Path(out["chains"]["none"]["video"]).is_file()
