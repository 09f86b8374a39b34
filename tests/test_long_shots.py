"""Shots of any length: segment geometry, planning, blending, seeds, seams, and CamI2V long shots
(tiny model, 2 DDIM steps) through the generator and the service, including cancel and resume."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from core import longshot
from core.camera import CameraPath, extend_path, preset_path, rebase_path
from core.clip import Clip
from core.errors import Cancelled, InputError, Unavailable
from core.generators import cami2v as cami2v_gen
from core.generators.base import GenerateRequest
from core.generators.cami2v import CamI2VGenerator
from core.generators.kenburns import KenBurnsGenerator
from core.generators.segments import blend_segments, finished_segments, plan_segments, seam_report, segment_seed
from core.models.cami2v import keymap
from core.models.cami2v.config import tiny_params
from core.models.cami2v.model import LatentVideoDiffusion
from core.models.cami2v.pipeline import CamI2VPipeline
from core.models.weight_rule import fill_with_rule
from core.progress import Progress
from core.service import CameraSpec, JobRequest, Studio, StudioSettings


def user_path(n: int = 40) -> CameraPath:
    """An orbit with translation and rotation, shifted into an arbitrary world frame."""
    p = preset_path("orbit-left", n, distance=0.7)
    offset = np.eye(4)
    offset[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    offset[:3, 3] = (2.0, -1.0, 5.0)
    return CameraPath.from_c2w(offset @ p.c2w(), p.intrinsics, "orbit-left")


# ------------------------------------------------------------------------------ geometry

def test_rebase_puts_the_conditioning_camera_at_the_origin():
    path = user_path()
    seg = rebase_path(path, 15, 15, 31)
    c2w = path.c2w()
    assert seg.num_frames == 16
    np.testing.assert_allclose(seg.c2w()[0], np.eye(4), atol=1e-12)
    expected = np.linalg.inv(c2w[15]) @ c2w[15:31]
    np.testing.assert_allclose(seg.c2w(), expected, atol=1e-12)
    np.testing.assert_allclose(seg.relative_c2w(0), expected, atol=1e-12)
    # same units: distances between camera centres are those of the user's path
    np.testing.assert_allclose(np.linalg.norm(np.diff(seg.centres(), axis=0), axis=1),
                               np.linalg.norm(np.diff(path.centres()[15:31], axis=0), axis=1), atol=1e-12)
    np.testing.assert_array_equal(seg.intrinsics, path.intrinsics[15:31])
    with pytest.raises(InputError):
        rebase_path(path, 0, 39, 41)


def test_extend_path_continues_at_constant_velocity():
    path = user_path(10)
    ext = extend_path(path, 14)
    c2w = ext.c2w()
    np.testing.assert_allclose(c2w[:10], path.c2w(), atol=1e-12)
    step = np.linalg.inv(c2w[8]) @ c2w[9]
    for i in range(10, 14):
        np.testing.assert_allclose(np.linalg.inv(c2w[i - 1]) @ c2w[i], step, atol=1e-9)
    assert extend_path(path, 10) is path


# ------------------------------------------------------------------------------ plan, blend, seeds

def test_plan_covers_the_shot_with_constant_overlap():
    p = plan_segments(40, 16, 1)
    assert p.starts == (0, 15, 30) and p.count == 3 and p.covered == 46
    assert p.conditioning(1) == (0, 15) and p.conditioning(2) == (1, 15)  # the last frame
    p3 = plan_segments(40, 16, 3)
    assert p3.starts == (0, 13, 26) and p3.conditioning(1) == (0, 13)
    assert plan_segments(16, 16).count == 1 and plan_segments(10, 16).count == 1
    with pytest.raises(InputError):
        plan_segments(40, 16, 0)
    with pytest.raises(InputError):
        plan_segments(40, 16, 9)


def test_blend_crossfades_shared_frames_and_yields_exactly_n():
    plan = plan_segments(10, 5, 2)  # starts 0, 3, 6
    segs = [np.full((5, 2, 3, 3), v, np.uint8) for v in (0, 90, 180)]
    out = blend_segments(segs, plan)
    assert out.shape == (10, 2, 3, 3)
    got = out[:, 0, 0, 0].tolist()
    # shared frames 3, 4 (weights 1/3, 2/3 of segment 1) and 6, 7; frames past 10 dropped
    assert got == [0, 0, 0, 30, 60, 90, 120, 150, 180, 180]


def test_segment_seeds_are_reproducible_and_distinct():
    seeds = [segment_seed(7, k) for k in range(5)]
    assert seeds[0] == 7 and len(set(seeds)) == 5
    assert seeds == [segment_seed(7, k) for k in range(5)]
    assert segment_seed(8, 1) != seeds[1]
    assert all(0 <= s < 2**32 for s in seeds)


def test_seam_score_flags_a_stuttering_join():
    rng = np.random.default_rng(0)
    tex = (rng.random((80, 140)) * 255).astype(np.uint8)
    tex = np.stack([tex] * 3, -1)
    import cv2

    tex = cv2.GaussianBlur(tex, (5, 5), 1.0)
    frames = np.stack([tex[10:74, 2 * t:2 * t + 96] for t in range(22)])  # 2 px pan per frame
    plan = plan_segments(22, 8, 1)  # starts 0, 7, 14
    smooth = seam_report(frames, plan)
    assert [j["frame"] for j in smooth["joins"]] == [7, 14]
    assert all(j["score"] < 2.0 for j in smooth["joins"])
    jumpy = frames.copy()
    jumpy[14:] = np.clip(jumpy[14:].astype(int) + 60, 0, 255).astype(np.uint8)  # a brightness jump at join 2
    rep = seam_report(jumpy, plan)
    assert rep["joins"][1]["score"] > 5.0 and rep["joins"][0]["score"] < 2.0
    assert rep["worst_score"] == rep["joins"][1]["score"]


# ------------------------------------------------------------------------------ CamI2V long shots

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model is far too small for two threads to help; on a busy machine they only spin.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny16():
    with torch.device("meta"):
        model = LatentVideoDiffusion(tiny_params("cami2v", num_frames=16), component_presets="tiny")
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    return model.eval()


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (90, 140, 3), dtype=np.uint8)


class Spy:
    """Records what each CamI2V pipeline call received: conditioning image and camera input."""

    def __init__(self, monkeypatch):
        self.images, self.rels = [], []
        orig_generate, orig_inputs = CamI2VPipeline.generate, CamI2VPipeline.camera_inputs
        spy = self

        def generate(pipe, request, **kw):
            spy.images.append(np.array(request.image))
            return orig_generate(pipe, request, **kw)

        def camera_inputs(pipe, path, frames):
            rel, K, info = orig_inputs(pipe, path, frames)
            spy.rels.append(rel[0].numpy().copy())
            return rel, K, info

        monkeypatch.setattr(CamI2VPipeline, "generate", generate)
        monkeypatch.setattr(CamI2VPipeline, "camera_inputs", camera_inputs)


def long_request(seed=3, **kw):
    return GenerateRequest(photo(), user_path(40), prompt="a room", seed=seed, params={"steps": 2}, num_frames=40,
                           **kw)


def test_cami2v_40_frames_run_three_rebased_segments(tiny16, monkeypatch, tmp_path):
    spy = Spy(monkeypatch)
    gen = CamI2VGenerator("cami2v-512", lambda: tiny16)
    msgs = []
    res = gen.generate(long_request(run_dir=tmp_path), lambda f, m: msgs.append(m))
    assert res.clip.frames.shape == (40, 64, 64, 3) and res.info["num_frames"] == 40
    assert res.info["segments"]["count"] == 3 and res.info["segments"]["starts"] == [0, 15, 30]
    assert len(spy.images) == 3
    # segment 2's camera input is the user's path re-based on its conditioning frame's pose
    c2w = user_path(40).c2w()
    np.testing.assert_allclose(spy.rels[1], (np.linalg.inv(c2w[15]) @ c2w[15:31]).astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(spy.rels[0], (np.linalg.inv(c2w[0]) @ c2w[0:16]).astype(np.float32), atol=1e-6)
    ext = extend_path(user_path(40), 46).c2w()  # the last segment runs 6 frames past the shot
    np.testing.assert_allclose(spy.rels[2], (np.linalg.inv(ext[30]) @ ext[30:46]).astype(np.float32), atol=1e-5)
    # ... and its image is segment 1's last frame (the saved, lossless segments)
    segs = [np.load(tmp_path / "segments" / f"segment-{k:03d}.npz")["frames"] for k in range(3)]
    np.testing.assert_array_equal(spy.images[1], segs[0][15])
    np.testing.assert_array_equal(spy.images[2], segs[1][15])
    # the shared frame is blended, not duplicated: 40 frames, frame 15 = mean of both versions
    blend = np.rint((segs[0][15].astype(np.float32) + segs[1][0]) / 2).astype(np.uint8)
    np.testing.assert_array_equal(res.clip.frames[15], blend)
    np.testing.assert_array_equal(res.clip.frames[16:30], segs[1][1:15])
    np.testing.assert_array_equal(res.clip.frames[31:40], segs[2][1:10])
    assert any(m.startswith("segment 2 of 3, denoising step 1/2") for m in msgs)
    assert len(res.info["seams"]["joins"]) == 2
    # determinism per seed
    np.testing.assert_array_equal(gen.generate(long_request(), None).clip.frames, res.clip.frames)
    assert not np.array_equal(gen.generate(long_request(seed=4), None).clip.frames, res.clip.frames)


def test_one_segment_long_shot_equals_the_plain_generation(tiny16):
    gen = CamI2VGenerator("cami2v-512", lambda: tiny16)
    path = user_path(16)
    plain = gen.generate(GenerateRequest(photo(), path, seed=5, params={"steps": 2}), None)
    long = gen.generate(GenerateRequest(photo(), path, seed=5, params={"steps": 2}, num_frames=16), None)
    np.testing.assert_array_equal(plain.clip.frames, long.clip.frames)
    assert long.info["seams"]["joins"] == []


def test_cancel_keeps_finished_segments_and_resume_matches(tiny16, tmp_path):
    gen = CamI2VGenerator("cami2v-512", lambda: tiny16)
    full = gen.generate(long_request(), None).clip.frames

    def stop_in_segment_3(f, m):
        if m.startswith("segment 3 of 3, denoising step 1/2"):
            prog.cancel()

    prog = Progress(stop_in_segment_3)
    with pytest.raises(Cancelled):
        gen.generate(long_request(run_dir=tmp_path), prog)
    assert finished_segments(tmp_path) == 2
    resumed = gen.generate(long_request(run_dir=tmp_path), None)
    assert resumed.info["segments"]["resumed"] == 2
    np.testing.assert_array_equal(resumed.clip.frames, full)
    # another request cannot pick up these segments
    with pytest.raises(InputError):
        gen.generate(long_request(seed=9, run_dir=tmp_path), None)


# ------------------------------------------------------------------------------ through the service

@pytest.fixture()
def studio(tmp_path, monkeypatch, tiny16):
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "512_cami2v_100k.pt").write_bytes(b"stand-in")
    (tmp_path / "models.json").write_text(json.dumps({"models": {
        "cami2v-512": {"kind": "generator", "variant": "cami2v", "label": "CamI2V 512x320",
                       "files": [{"role": "checkpoint", "path": "ckpts/512_cami2v_100k.pt"}]}}}))
    monkeypatch.setattr(cami2v_gen, "load_model", lambda registry, entry, *, device, dtype: tiny16)
    return Studio(StudioSettings(root=tmp_path, models=tmp_path / "models.json", outputs=tmp_path / "out",
                                 device="cpu", min_free_bytes=0))


def read_frames(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("frame-*.png"))])


def job(**kw) -> JobRequest:
    return JobRequest(photo(), CameraSpec(preset="orbit-left", distance=0.7), model="cami2v-512", seed=3,
                      params={"steps": 2}, chains=("none",), save_frames=True, seconds=4.0, **kw)


def test_service_cancel_leaves_a_partial_run_that_resume_completes(studio):
    events = list(studio.run_job(job()))
    done = events[-1]
    assert done.kind == "done"
    full = read_frames(events[1].frames_dir)
    assert full.shape[0] == 40
    metrics = json.loads((studio.open_run(done.run_id).dir / "metrics.json").read_text())
    assert [j["join"] for j in metrics["seams"]["joins"]] == [1, 2]

    job_id = studio.new_job_id()

    def cancel_in_segment_2(f, m):
        if "segment 2 of 3, denoising step 1/2" in m:
            studio.cancel(job_id)

    with pytest.raises(Cancelled):
        list(studio.run_job(job(), cancel_in_segment_2, job_id=job_id))
    partial = [r for r in studio.list_runs() if r.id != done.run_id][0]
    assert partial.status == "partial"  # never shown as complete
    assert finished_segments(partial.path) == 1
    resume_job = studio.submit_resume(partial.id)  # the Runs tab's Resume button: a server job
    assert studio.wait_job(resume_job, timeout=600).status == "complete"
    run = studio.open_run(partial.id)
    assert run.status == "complete"
    np.testing.assert_array_equal(read_frames(run.dir / run.data["chains"]["none"]["files"]["png"]), full)
    with pytest.raises(InputError):
        list(studio.resume(partial.id))  # complete now


def test_kenburns_renders_any_length_at_the_output_fps(tmp_path):
    s = Studio(StudioSettings(root=tmp_path, models=tmp_path / "none.json", outputs=tmp_path / "out", device="cpu",
                              min_free_bytes=0))
    req = JobRequest(photo(), CameraSpec(preset="push-in"), model="kenburns", params={"width": 64, "height": 48},
                     seconds=2.0, output_fps=15.0)
    events = list(s.run_job(req))
    m = events[1].metrics
    assert m["num_frames"] == 30
    run = s.open_run(events[-1].run_id)
    assert run.data["params"]["length"]["num_frames"] == 30 and run.data["generator_info"]["fps"] == 15.0
    shot = s.generate_shot(photo(), CameraSpec(preset="pan-left"), "kenburns", seconds=1.0, output_fps=24.0,
                           params={"width": 64, "height": 48})
    assert shot.clip.num_frames == 24 and shot.clip.fps == 24.0


def test_ai_output_fps_goes_through_retime(monkeypatch):
    gen = CamI2VGenerator("cami2v-512", lambda: None)
    plan = longshot.plan_length(gen, {}, 4.0, 30.0)
    assert (plan.num_frames, plan.native_fps, plan.output_fps, plan.retime) == (40, 10.0, 30.0, True)
    assert longshot.plan_length(gen, {}, None) is None
    kb = longshot.plan_length(KenBurnsGenerator(), {"fps": 10.0}, 4.0, 30.0)
    assert (kb.num_frames, kb.retime) == (120, False)
    with pytest.raises(InputError):
        longshot.plan_length(gen, {}, 0.0)
    clip = Clip(np.zeros((40, 8, 8, 3), np.uint8), 10.0)
    monkeypatch.setitem(sys.modules, "core.postprocess.interpolate", None)  # not installed
    with pytest.raises(Unavailable, match="Output fps 30"):
        longshot.to_output_fps(clip, plan)
    calls = []

    def retime(c, fps, method="dis"):
        calls.append((c.num_frames, fps, method))
        return Clip(np.zeros((118, 8, 8, 3), np.uint8), fps)

    monkeypatch.setitem(sys.modules, "core.postprocess.interpolate", types.SimpleNamespace(retime=retime))
    out = longshot.to_output_fps(clip, plan)
    assert calls == [(40, 30.0, "dis")] and out.fps == 30.0


def test_create_tab_path_view_marks_segment_boundaries(studio):
    from ui import longshot as ui_longshot
    from ui.figures import camera_figure

    path, starts = ui_longshot.path_for_view(studio, "cami2v-512", CameraSpec(preset="pan-left"), 4, 0)
    assert path.num_frames == 40 and starts == (15, 30)
    fig = camera_figure(path, 512, 320, segment_starts=starts)
    marks = [t for t in fig.data if t.name == "segment boundaries"]
    assert len(marks) == 1 and list(marks[0].text) == ["segment 2", "segment 3"]
    assert ui_longshot.path_for_view(studio, "cami2v-512", CameraSpec(), 0, 0)[0].num_frames == 16
    assert ui_longshot.length_fields(4, 30) == {"seconds": 4.0, "output_fps": 30.0}
    assert ui_longshot.length_fields(0, 0) == {}
    line = ui_longshot.seams_markdown({"joins": [{"join": 1, "frame": 15, "diff": 3.0, "score": 1.25}]})
    assert "join 1 (frame 15) ×1.25" in line


def test_cli_generate_accepts_a_length(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    Image.fromarray(photo()).save(tmp_path / "room.png")
    r = subprocess.run([sys.executable, "-m", "core", "generate", "--image", str(tmp_path / "room.png"),
                        "--model", "kenburns", "--path", "push-in", "--out", str(tmp_path / "out"), "--frames",
                        "--seconds", "2", "--fps", "12", "--param", "width=64", "--param", "height=48"],
                       cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "out" / "room" / "push-in"
    assert len(list((d / "frames" / "none").glob("*.png"))) == 24
    assert json.loads((d / "run.json").read_text())["params"]["length"]["output_fps"] == 12.0


def test_generate_shot_for_tours_retimes_ai_frames(studio, monkeypatch, tmp_path):
    def retime(c, fps, method="dis"):  # stands in for core.postprocess.interpolate.retime
        idx = np.round(np.linspace(0, c.num_frames - 1, int(round(c.duration * fps)))).astype(int)
        return Clip(np.ascontiguousarray(c.frames[idx]), fps)

    monkeypatch.setitem(sys.modules, "core.postprocess.interpolate", types.SimpleNamespace(retime=retime))
    res = studio.generate_shot(photo(), CameraSpec(preset="push-in"), "cami2v-512", seconds=1.6, output_fps=20.0,
                               seed=1, params={"steps": 2}, run_dir=tmp_path / "shot")
    assert res.clip.fps == 20.0 and res.clip.num_frames == 32
    assert res.info["segments"]["count"] == 1 and finished_segments(tmp_path / "shot") == 1
