"""Tours: transition arithmetic, 9:16 crop, defaults, bad input, resume, and a 3-room 12-second
30 fps Ken Burns tour end to end from the command line, read back from the MP4."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import tour as tourlib
from core.errors import Cancelled, InputError
from core.tour import Shot, Tour, Transition, make_tour

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "assets" / "examples").glob("*.jpg"))


def _const_shots(tour: Tour, values=(40, 120, 200, 80)) -> list[np.ndarray]:
    """Rendered frames of constant grey per shot, with the lengths the tour asks for."""
    return [np.full((tour.render_frames(i), 4, 8, 3), values[i], np.uint8) for i in range(len(tour.shots))]


def _small_photos(tmp_path: Path, n: int = 3) -> list[Path]:
    out = []
    for i, p in enumerate(EXAMPLES[:n]):
        q = tmp_path / f"room{i}.png"
        Image.open(p).resize((192, 120)).save(q)
        out.append(q)
    return out


# ------------------------------------------------------------------------------- transitions

def test_crossfade_arithmetic():
    a = np.zeros((3, 2, 2, 3), np.uint8)
    b = np.full((3, 2, 2, 3), 200, np.uint8)
    # weights of the incoming shot: 1/4, 2/4, 3/4
    assert tourlib.crossfade(a, b)[:, 0, 0, 0].tolist() == [50, 100, 150]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 5, 6, 7, 3), dtype=np.uint8)
    w = (np.arange(1, 6) / 6)[:, None, None, None]
    exact = (1 - w) * a + w * b
    assert np.abs(tourlib.crossfade(a, b).astype(float) - exact).max() <= 0.5 + 1e-6


def test_crossfade_tour_keeps_its_length_and_mixes_the_handle():
    tour = make_tour(["a.jpg", "b.jpg", "c.jpg"], seconds=[2, 3, 2], fps=24, width=64, height=36,
                     transition=Transition("crossfade", 0.5))
    k = 12
    assert [tour.render_frames(i) for i in range(3)] == [48 + k, 72 + k, 48]
    out = np.stack(list(tourlib.assemble(tour, iter(_const_shots(tour)))))
    assert out.shape[0] == tour.num_frames == 168 and tour.duration == pytest.approx(7.0)
    v = out[:, 0, 0, 0].astype(int)
    assert (v[:48] == 40).all()  # shot 1 unmixed up to the join
    expected = np.rint(40 + (120 - 40) * np.arange(1, k + 1) / (k + 1))
    assert np.abs(v[48:48 + k] - expected).max() <= 1  # shot 1's handle fading into shot 2
    assert (v[48 + k:120] == 120).all() and (v[120 + k:] == 200).all()
    assert np.all(np.diff(v[48:48 + k]) > 0)


def test_dip_to_black_has_a_black_middle_frame():
    tour = make_tour(["a.jpg", "b.jpg"], seconds=2, fps=30, width=64, height=36, transition=Transition("dip", 0.5))
    m = 8  # round(0.5 * 30 / 2)
    assert tour.transition.frames(30) == m and tour.num_frames == 120
    assert tour.render_frames(0) == 60  # a dip needs no handle
    v = np.stack(list(tourlib.assemble(tour, iter(_const_shots(tour, (200, 100))))))[:, 0, 0, 0].astype(int)
    assert v[60] == 0  # the incoming shot's first frame: the bottom of the dip
    assert (v[:60 - m + 1] == 200).all() and (v[60 + m:] == 100).all()
    assert np.all(np.diff(v[60 - m:61]) < 0) and np.all(np.diff(v[60:60 + m + 1]) > 0)
    # symmetric in gain around the black frame: 1/m on both sides
    assert v[59] == round(200 / m) and v[61] == round(100 / m)


def test_cut_is_plain_concatenation():
    tour = make_tour(["a.jpg", "b.jpg", "c.jpg"], seconds=1.5, fps=24, width=64, height=36,
                     transition=Transition("cut"))
    shots = _const_shots(tour)
    rng = np.random.default_rng(1)
    shots = [rng.integers(0, 256, s.shape, dtype=np.uint8) for s in shots]
    out = np.stack(list(tourlib.assemble(tour, iter(shots))))
    np.testing.assert_array_equal(out, np.concatenate(shots))
    assert tour.transition.seconds == 0 and out.shape[0] == 3 * 36


def test_vertical_crop_is_9_16_from_the_centre():
    assert tourlib.vertical_size(1280, 720) == (404, 720)
    assert tourlib.vertical_size(1920, 1080) == (606, 1080)
    frame = np.arange(720 * 1280 * 3, dtype=np.uint32).reshape(720, 1280, 3).astype(np.uint8)
    crop = tourlib.vertical_crop(frame)
    assert crop.shape == (720, 404, 3)
    np.testing.assert_array_equal(crop, frame[:, 438:842])
    w, h = tourlib.vertical_size(640, 360)
    assert w % 2 == 0 and abs(w / h - 9 / 16) < 2 / h


def test_fit_frames_covers_16_9_without_bars():
    frames = np.zeros((2, 320, 512, 3), np.uint8)
    frames[:, :16] = 255  # the top rows a 16:9 crop of 512x320 drops
    out = tourlib.fit_frames(frames, 256, 144)
    assert out.shape == (2, 144, 256, 3) and out.max() == 0


# ------------------------------------------------------------------------------- defaults and input

def test_shot_and_tour_defaults():
    s = Shot("room.jpg")
    assert (s.move, s.seconds, s.prompt) == ("push-in", 4.0, "")
    tour = make_tour(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"])
    assert [x.move for x in tour.shots] == ["push-in", "pan-right", "push-in", "pan-left", "push-in"]
    assert (tour.fps, tour.width, tour.height, tour.vertical, tour.model) == (30, 1280, 720, False, "kenburns")
    assert (tour.transition.kind, tour.transition.seconds) == ("crossfade", 0.5)
    assert tour.duration == pytest.approx(20.0) and tour.vertical_size == (404, 720)
    assert [x.move for x in make_tour(["a", "b"], moves=["slide-left"]).shots] == ["slide-left", "slide-left"]
    assert Transition("Dip to black").kind == "dip" and Transition("cut", 0.5).seconds == 0


@pytest.mark.parametrize("build, words", [
    (lambda: Tour(shots=()), "at least one shot"),
    (lambda: make_tour([]), "at least one shot"),
    (lambda: Shot("a.jpg", seconds=-2), "between 1 and 30 seconds"),
    (lambda: Shot("a.jpg", seconds="long"), "must be a number"),
    (lambda: Shot("a.jpg", move="zoom-wobble"), "Unknown camera move 'zoom-wobble'"),
    (lambda: make_tour(["a.jpg"], fps=25), "24 or 30"),
    (lambda: make_tour(["a.jpg"], width=1280, height=800), "16:9"),
    (lambda: Transition("wipe"), "Unknown transition"),
    (lambda: make_tour(["a.jpg", "b.jpg"], seconds=1.5, transition=Transition("crossfade", 1.0)), "at least 2 s"),
])
def test_bad_tours_are_one_clear_line(build, words):
    with pytest.raises(InputError) as err:
        build()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_non_image_photo_is_refused_before_any_run(tmp_path):
    from core.service import Studio, StudioSettings

    (tmp_path / "notes.jpg").write_text("not an image")
    studio = Studio(StudioSettings(outputs=tmp_path / "out"))
    tour = make_tour([EXAMPLES[0], tmp_path / "notes.jpg"], width=64, height=36)
    with pytest.raises(InputError) as err:
        list(studio.run_tour(tour))
    assert str(err.value).startswith("Shot 2: ") and "not an image" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(InputError, match="Shot 1: no such photo"):
        list(studio.run_tour(make_tour([tmp_path / "missing.jpg"], width=64, height=36)))


def test_shots_file_reads_relative_photos(tmp_path):
    photos = _small_photos(tmp_path, 2)
    f = tmp_path / "shots.json"
    f.write_text(json.dumps({"fps": 24, "transition": "dip", "shots": [
        {"photo": photos[0].name, "move": "pan-left", "seconds": 3, "prompt": "a kitchen"},
        {"photo": str(photos[1])}]}))
    tour = tourlib.load_shots_file(f)
    assert tour.fps == 24 and tour.transition.kind == "dip"
    assert tour.shots[0].photo == photos[0] and tour.shots[0].prompt == "a kitchen"
    assert (tour.shots[1].move, tour.shots[1].seconds) == ("pan-right", 4.0)
    f.write_text(json.dumps([{"photo": "a.jpg", "zoom": 2}]))
    with pytest.raises(InputError, match="unknown field"):
        tourlib.load_shots_file(f)


# ------------------------------------------------------------------------------- running

def _mp4_top_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return boxes


def test_cancelled_tour_resumes_skipping_finished_shots(tmp_path, monkeypatch):
    from core.service import Studio, StudioSettings
    from core.video import read_video

    studio = Studio(StudioSettings(outputs=tmp_path / "out"))
    tour = make_tour(_small_photos(tmp_path), seconds=1, fps=24, width=96, height=54,
                     transition=Transition("crossfade", 0.25), params={"quality": "fast"})
    rendered: list[int] = []
    real = tourlib._render_shot

    def counting(studio_, generator, tour_, index, *a, **k):
        rendered.append(index)
        return real(studio_, generator, tour_, index, *a, **k)

    monkeypatch.setattr(tourlib, "_render_shot", counting)
    job = studio.new_job_id()
    events = studio.run_tour(tour, job_id=job)
    run_id = None
    with pytest.raises(Cancelled):
        for ev in events:
            run_id = ev.run_id
            if ev.kind == "shot" and ev.index == 1:
                studio.cancel(job)  # stops inside shot 3
    run = studio.open_run(run_id)
    assert run.status == "cancelled" and rendered == [0, 1, 2]
    assert sorted(run.data["tour"]["shots"]) == ["0", "1"]
    assert not (run.dir / "tour.mp4").exists()  # no half-written tour under its final name

    rendered.clear()
    events = list(studio.run_tour(None, resume=run_id))
    shots = [e for e in events if e.kind == "shot"]
    assert [(e.index, e.skipped) for e in shots] == [(0, True), (1, True), (2, False)]
    assert rendered == [2]
    assert studio.open_run(run_id).status == "complete"
    clip = read_video(events[-1].video, max_pixels=None)
    assert (clip.num_frames, clip.width, clip.height) == (72, 96, 54) and clip.fps == pytest.approx(24)

    # a changed shot is rendered again; the others are kept
    rendered.clear()
    changed = Tour(**{**tour.__dict__, "shots": (tour.shots[0], Shot(tour.shots[1].photo, "tilt-up", 1),
                                                  tour.shots[2])})
    list(studio.run_tour(changed, resume=run_id))
    assert rendered == [1]


def test_cli_three_room_twelve_second_tour(tmp_path):
    """The acceptance run: 3 rooms x 4 s at 30 fps -> a 12.000 s MP4 (read back and checked), with
    the 9:16 cut, browser-ready (H.264 yuv420p, moov before mdat)."""
    from core.video import read_video

    out = tmp_path / "tour"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "core", "tour", "--photos", *map(str, EXAMPLES[:3]),
                        "--moves", "push-in,pan-left", "--seconds", "4", "--fps", "30", "--out", str(out),
                        "--size", "320x180", "--vertical", "--param", "quality=fast"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "12.00 s at 30 fps" in r.stdout
    clip = read_video(out / "tour.mp4", max_pixels=None)
    assert (clip.num_frames, clip.width, clip.height) == (360, 320, 180)
    assert clip.fps == pytest.approx(30.0) and clip.duration == pytest.approx(12.0)
    vert = read_video(out / "tour-vertical.mp4", max_pixels=None)
    assert (vert.num_frames, vert.width, vert.height) == (360, 100, 180)
    boxes = _mp4_top_boxes(out / "tour.mp4")
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: plays while downloading
    import imageio.v2 as imageio

    reader = imageio.get_reader(out / "tour.mp4", format="FFMPEG")
    meta = reader.get_meta_data()
    reader.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["duration"] == pytest.approx(12.0, abs=0.05)
    assert len(list((out / "shots").glob("shot-*.mp4"))) == 3
    moves = [s["move"] for s in json.loads((out / "tour.json").read_text())["shots"]]
    assert moves == ["push-in", "pan-left", "push-in"]
    # the frames differ from shot to shot: the three rooms really are in the tour
    means = [clip.frames[i].mean() for i in (60, 180, 300)]
    assert len({round(m) for m in means}) == 3


def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "core", "tour", "--photos", str(EXAMPLES[0]), "--moves", "moonwalk",
                        "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "Unknown camera move 'moonwalk'" in r.stderr


def test_ai_tour_runs_shot_by_shot_with_a_chain(tmp_path, monkeypatch, torch_one_thread):
    """The AI path of a tour with a tiny CamI2V standing in for the released checkpoint: a long
    shot per photo at the model's size and fps, the chain at the model's size, then retimed to
    the tour's fps and fitted to 16:9."""
    from core.generators import cami2v as cami2v_gen
    from core.service import Studio, StudioSettings
    from core.video import read_video
    from tests.test_cami2v_service import tiny_model

    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "512_cami2v_100k.pt").write_bytes(b"stand-in")
    (tmp_path / "models.json").write_text(json.dumps({"models": {
        "cami2v-512": {"kind": "generator", "variant": "cami2v", "label": "CamI2V 512x320",
                       "files": [{"role": "checkpoint", "path": "ckpts/512_cami2v_100k.pt"}]}}}))
    monkeypatch.setattr(cami2v_gen, "load_model", lambda registry, entry, *, device, dtype: tiny_model())
    studio = Studio(StudioSettings(root=tmp_path, models=tmp_path / "models.json", outputs=tmp_path / "out",
                                   device="cpu", min_free_bytes=0))
    tour = make_tour(_small_photos(tmp_path, 2), moves=["orbit-left", "push-in"], seconds=1, fps=24, width=96,
                     height=54, model="cami2v-512", chain="denoise", params={"steps": 1},
                     transition=Transition("crossfade", 0.25), prompts=["a kitchen", "a bedroom"])
    events = list(studio.run_tour(tour))
    assert [e.kind for e in events] == ["started", "shot", "shot", "tour", "done"]
    run = studio.open_run(events[0].run_id)
    shots = run.data["tour"]["shots"]
    assert [shots[str(i)]["frames"] for i in range(2)] == [30, 24]  # 24 + a 6-frame handle, 24
    info = shots["0"]["info"]
    assert info["native_fps"] == pytest.approx(10.0) and "retime" in info
    assert [r["stage"] for r in info["chain"]] == ["nlmeans"]
    assert info["requested_frames"] == 12  # (1 s + 0.25 s handle) x 10 fps: one long shot
    assert info["generator"]["prompt"].startswith("a kitchen") and info["generator"]["seed"] == 0
    assert shots["1"]["info"]["generator"]["prompt"].startswith("a bedroom") and shots["1"]["seed"] == 1
    if info["native_frames"] != 12:  # a generator without segment chaining says what it did
        assert "stretches" in info["warnings"][0]
    clip = read_video(events[-1].video, max_pixels=None)
    assert (clip.num_frames, clip.width, clip.height) == (48, 96, 54) and clip.fps == pytest.approx(24)


def test_study_accepts_a_length(tmp_path):
    from core import study as studylib
    from core.service import Studio, StudioSettings

    photos = _small_photos(tmp_path, 1)
    studio = Studio(StudioSettings(outputs=tmp_path / "runs"))
    result = studylib.run_study(studio, photos, "push-in", "none", "kenburns", tmp_path / "study",
                                seconds=2.5, params={"width": 64, "height": 40})
    assert result.complete == 1
    run = next(iter(studio.list_runs()))
    assert run.status == "complete"
    camera = json.loads((tmp_path / "runs" / run.id / "camera.json").read_text())
    assert len(camera["w2c"]) == 25  # 2.5 s x the preview's 10 fps
    assert studylib.StudySpec(images=(photos[0],), seconds=2.5).settings()["seconds"] == 2.5
    assert "seconds" not in studylib.StudySpec(images=(photos[0],)).settings()  # older studies still resume
    with pytest.raises(InputError, match="--seconds"):
        studylib.StudySpec(images=(photos[0],), seconds=-1)


def test_mp4_stream_writes_atomically(tmp_path):
    from core.video import Mp4Stream, read_video

    frames = np.random.default_rng(0).integers(0, 256, (5, 20, 33, 3), dtype=np.uint8)
    with Mp4Stream(tmp_path / "a.mp4", 24) as out:
        for f in frames:
            out.append(f)
    assert (out.result.width, out.result.height, out.result.num_frames, out.result.cropped) == (32, 20, 5, (1, 0))
    clip = read_video(tmp_path / "a.mp4")
    assert clip.num_frames == 5 and clip.fps == pytest.approx(24)
    with pytest.raises(Cancelled):
        with Mp4Stream(tmp_path / "b.mp4", 24) as out:
            out.append(frames[0])
            raise Cancelled("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # no file, no temporary left
