"""The service object end to end on the embedded default (no weights, CPU)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from core.errors import Cancelled, ConfigError, InputError, StudioError, Unavailable
from core.postprocess.base import Stage
from core.postprocess import chains as chainlib
from core.service import CameraSpec, JobRequest, Studio, StudioSettings

SMALL = {"width": 96, "height": 64}


def photo(h=120, w=180, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, ((xx // 12 + yy // 12) % 2) * 200], -1)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def studio(tmp_path) -> Studio:
    return Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                 min_free_bytes=0))


def run_all(studio: Studio, request: JobRequest, **kw):
    return list(studio.run_job(request, **kw))


def test_missing_registry_falls_back_to_builtins(studio):
    assert any("not found" in m for m in studio.startup_messages())
    names = {i.name for i in studio.model_infos()}
    assert {"kenburns", "nlmeans", "lanczos"} <= names
    assert studio.default_generator() == "kenburns"


def test_broken_registry_is_one_line_and_app_still_works(tmp_path):
    bad = tmp_path / "models.json"
    bad.write_text('{"models": {"x": {"kind": "generator"}}}')
    s = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=bad, min_free_bytes=0))
    msgs = s.startup_messages()
    assert len(msgs) == 1 and "'x'" in msgs[0] and "'variant'" in msgs[0]
    assert "\n" not in msgs[0]
    assert s.availability("kenburns").available


def test_job_events_files_and_run_json(studio):
    req = JobRequest(photo(), CameraSpec(preset="push-in"), params=SMALL,
                     chains=("none", "upscale", "denoise+upscale"), stage_params={"lanczos": {"scale": 2}},
                     image_name="../../etc/evil name.png", save_frames=True)
    events = run_all(studio, req)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    by_chain = {e.chain: e for e in events if e.chain}
    assert list(by_chain) == ["none", "upscale", "denoise+upscale"]
    for name, ev in by_chain.items():
        assert ev.video.is_file() and ev.video.stat().st_size > 0
        assert ev.frames_dir.is_dir()
    assert by_chain["none"].metrics["size"] == [96, 64]
    assert by_chain["upscale"].metrics["size"] == [192, 128]
    # common resolution: every chain measured at the generator's size
    assert by_chain["upscale"].metrics["common"] is not None
    run = studio.open_run(events[0].run_id)
    data = json.loads((run.dir / "run.json").read_text())
    assert data["status"] == "complete"
    assert data["params"]["model"] == "kenburns"
    assert data["params"]["camera"]["preset"] == "push-in"
    assert data["seeds"]["generator"] == 0
    assert data["input"]["original_name"] == "evil name.png"  # only the basename, kept as data
    assert set(data["chains"]) == {"none", "upscale", "denoise+upscale"}
    assert data["chains"]["denoise+upscale"]["stages"][0]["stage"] == "nlmeans"
    assert "generate" in data["timings"]
    metrics = json.loads(run.path("metrics").read_text())
    assert [c for c in metrics["table"][0]["cells"]] == ["none", "upscale", "denoise+upscale"]
    camera = json.loads(run.path("camera").read_text())
    assert len(camera["w2c"]) == 16
    # history survives a "restart": a new Studio over the same outputs lists the run
    again = Studio(studio.settings)
    assert [r.id for r in again.list_runs()] == [events[0].run_id]


def test_job_is_deterministic(studio):
    req = JobRequest(photo(), CameraSpec(preset="pan-left"), params=SMALL, chains=("none",))
    a = [e for e in run_all(studio, req) if e.chain][0]
    b = [e for e in run_all(studio, req) if e.chain][0]
    assert a.metrics["native"]["tpsnr"]["per_pair"] == b.metrics["native"]["tpsnr"]["per_pair"]


def test_bad_requests_fail_before_a_run_exists(studio):
    with pytest.raises(InputError, match="fastdvdnetx"):
        run_all(studio, JobRequest(photo(), params=SMALL, chains=("fastdvdnetx",)))
    with pytest.raises(InputError, match="Seed"):
        run_all(studio, JobRequest(photo(), params=SMALL, seed=-3))
    with pytest.raises(InputError, match="at least 8"):
        run_all(studio, JobRequest(photo(), params={"width": 4}))
    with pytest.raises(ConfigError, match="no model named"):
        run_all(studio, JobRequest(photo(), model="sora"))
    with pytest.raises(InputError, match="Unknown camera preset"):
        run_all(studio, JobRequest(photo(), CameraSpec(preset="barrel-roll"), params=SMALL))
    with pytest.raises(InputError, match="RGB image"):
        run_all(studio, JobRequest(np.zeros((10, 10), np.uint8)))
    assert studio.list_runs() == []


def test_unavailable_stage_is_refused_with_reason(tmp_path):
    reg = tmp_path / "models.json"
    reg.write_text(json.dumps({"models": {
        "fastdvdnet": {"kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
                       "files": [{"role": "model", "path": "ckpts/fastdvdnet/model.pth",
                                  "url": "https://example.org/model.pth"}]}}}))
    s = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=reg, min_free_bytes=0))
    with pytest.raises(Unavailable, match="weights missing: .*model.pth"):
        run_all(s, JobRequest(photo(), params=SMALL, chains=("denoise",), roles={"denoise": "fastdvdnet"}))


class FailingStage(Stage):
    name, label, role = "explode", "Explode", "upscale"

    def process(self, clip, params, progress):
        raise StudioError("the upscaler broke")


def test_failure_later_keeps_what_was_produced(studio, monkeypatch):
    monkeypatch.setitem(chainlib.STAGES, "explode", FailingStage)
    studio._stages["explode"] = FailingStage()
    monkeypatch.setattr(studio, "_stages_for", lambda chains, roles: {"explode": studio._stages["explode"]})
    events = []
    with pytest.raises(StudioError, match="the upscaler broke"):
        for ev in studio.run_job(JobRequest(photo(), params=SMALL, chains=("none", "explode"))):
            events.append(ev)
    assert [e.kind for e in events] == ["started", "generated"]
    run = studio.open_run(events[0].run_id)
    assert run.status == "failed" and "the upscaler broke" in run.data["error"]
    assert events[1].video.is_file()
    assert run.data["chains"]["none"]["files"]["mp4"]


def test_cancel_between_steps(studio):
    job = studio.new_job_id()
    events = []

    def progress(frac, msg):
        if frac > 0.2:
            studio.cancel(job)

    with pytest.raises(Cancelled):
        for ev in studio.run_job(JobRequest(photo(), params={**SMALL, "num_frames": 40}, chains=("none", "upscale")),
                                 progress, job_id=job):
            events.append(ev)
    run = studio.open_run(events[0].run_id)
    assert run.status == "cancelled"
    # nothing half-written that looks complete: no temporary or partial mp4s
    assert not [p for p in run.dir.iterdir() if p.name.endswith((".tmp", ".part"))]
    assert not studio.cancel(job)  # the job is forgotten once it ended


def test_camera_modes(studio):
    kf = ({"time": 0, "position": [0, 0, 0]}, {"time": 1, "position": [0.1, 0, 0.2], "yaw": 10})
    p = studio.camera_path(CameraSpec(mode="keyframes", keyframes=kf))
    assert p.num_frames == 16 and np.allclose(p.relative_c2w()[-1][:3, 3], [0.1, 0, 0.2])
    w = studio.camera_path(CameraSpec(mode="waypoints", waypoints=((0.5, 0.5),), depth=2.0))
    assert w.relative_c2w()[-1][2, 3] > 1.0  # travels forward towards the clicked centre
    text = studio.camera_path(CameraSpec(preset="slide-left")).to_realestate10k()
    f = studio.camera_path(CameraSpec(mode="file", text=text, distance=2.0))
    base = studio.camera_path(CameraSpec(preset="slide-left"))
    assert np.allclose(f.relative_c2w()[-1][:3, 3], 2 * base.relative_c2w()[-1][:3, 3], atol=1e-6)
    with pytest.raises(InputError):
        studio.camera_path(CameraSpec(mode="keyframes", keyframes=({"time": float("nan")},)))
    with pytest.raises(InputError):
        studio.camera_path(CameraSpec(mode="file", text="not a camera file"))


def test_concurrent_jobs_do_not_mix(studio):
    results: dict[int, list] = {}
    errors = []

    def work(k):
        try:
            results[k] = run_all(studio, JobRequest(photo(seed=k), CameraSpec(preset="push-in"), params=SMALL,
                                                    chains=("none",), seed=k))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert not errors
    run_ids = {results[k][0].run_id for k in results}
    assert len(run_ids) == 3
    for k, evs in results.items():
        run = studio.open_run(evs[0].run_id)
        assert run.data["seeds"]["generator"] == k


def test_consumer_closing_marks_run_cancelled(studio):
    gen = studio.run_job(JobRequest(photo(), params=SMALL, chains=("none", "upscale", "denoise")))
    started = next(gen)
    assert next(gen).kind == "generated"
    gen.close()  # e.g. the browser tab went away
    run = studio.open_run(started.run_id)
    assert run.status == "cancelled" and "closed" in run.data["error"]
    assert run.data["chains"]["none"]["files"]["mp4"]


def test_camera_adherence_is_measured_once_and_attached(studio):
    # The estimator's accuracy is tested in test_adherence.py on textured renders; here: the plumbing.
    req = JobRequest(photo(240, 360), CameraSpec(preset="pan-left"), params={"width": 192, "height": 120},
                     chains=("none", "upscale"), stage_params={"lanczos": {"scale": 2}}, measure_adherence=True)
    events = [e for e in run_all(studio, req) if e.chain]
    a = events[0].metrics["adherence"]
    assert a == events[1].metrics["adherence"]
    if a["available"]:
        assert {"estimator", "RotErr", "TransErr", "CamMC"} <= set(a) and np.isfinite(a["RotErr"])
    else:
        assert a["reason"]
    run = studio.open_run(events[0].run_id)
    assert run.data["adherence"]["available"] == a["available"] and "adherence" in run.data["timings"]
    metrics = json.loads(run.path("metrics").read_text())
    assert metrics["chains"]["upscale"]["adherence"] == a


def test_kenburns_fidelity_reference_is_the_photo_region_the_clip_shows(studio, monkeypatch):
    """Photo 180x120 (3:2) into a 64x64 clip: frame 0 shows the centre 120x120 square, and that
    square (photo pixels) is what fidelity is measured against."""
    import core.metrics

    seen = []
    real = core.metrics.measure
    monkeypatch.setattr(core.metrics, "measure",
                        lambda clip, reference_image=None, **kw: seen.append((clip, reference_image)) or real(
                            clip, reference_image=reference_image, **kw))
    img = photo()
    events = run_all(studio, JobRequest(img, CameraSpec(preset="push-in"), params={"width": 64, "height": 64},
                                        chains=("none",)))
    assert events[-1].kind == "done" and len(seen) == 1
    clip, ref = seen[0]
    box = studio.open_run(events[0].run_id).data["generator_info"]["crop_box"]
    assert box == [30, 0, 150, 120]
    np.testing.assert_array_equal(ref, img[0:120, 30:150])
    # and it is what frame 0 shows: the square resized to 64x64 matches the first frame closely
    import cv2
    small = cv2.resize(ref, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(small - clip.frames[0]).mean() < 2  # the whole photo squeezed in would give ~35
