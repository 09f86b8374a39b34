"""One walkthrough job, as a pipeline: plan -> open the run -> generate -> write the clip ->
post-process every chain -> write each chain's video and metrics -> summary.

`core.jobplan.plan` parses and checks the whole request before anything runs (a bad request
never leaves a run folder); `run_walkthrough` then goes through the steps in order, yielding a `JobEvent`
after each product and recording it in the run's `run.json` as it goes, so a failure or a
cancel later in the job loses nothing already produced. The device (GPU) is held only while
a model computes: encoding videos and measuring metrics are CPU work and run outside the
device lock, so they never keep the next job off the device.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from . import camera as cam
from . import longshot
from .clip import Clip
from .contracts import CameraSpec, JobRequest, basename
from .errors import StudioError
from .fileio import jsonable
from .hashing import cached_sha256_file
from .generators.base import GenerateRequest, GenerateResult, SegmentOptions
from .jobplan import JobPlan, make_timeline, plan
from .jobs import JobEvent, ProgressUpdate
from .licences import licence_record
from .postprocess import chains as chainlib
from .progress import Progress, ProgressFn

if TYPE_CHECKING:  # pragma: no cover
    from .service import Studio


def run_walkthrough(studio: "Studio", request: JobRequest, progress: ProgressFn | None = None,
                    job_id: str | None = None, on_progress: Callable[[ProgressUpdate], None] | None = None,
                    user: str | None = None) -> Iterator[JobEvent]:
    """`Studio.run_job`: see there."""
    job_id = job_id or studio.new_job_id()
    cancel_event = studio.jobs.cancel_event(job_id)

    def emit(u: ProgressUpdate) -> None:
        if progress is not None:
            from .eta import with_eta

            progress(u.fraction, with_eta(u.message, u.eta_s))
        if on_progress is not None:
            on_progress(u)

    try:
        p = plan(studio, request)
        run = studio._reopen_run(request.resume_run, user) if request.resume_run else _create_run(studio, p, user)
        timeline, steps_for = make_timeline(studio, p, emit, cancel_event)
    except StudioError:
        studio._forget(job_id)
        raise
    try:
        with run:
            total = timeline.total_estimate()
            yield JobEvent("started", run.id, message=f"run {run.id}" + (
                f"; this job should take about {_duration(total)} here" if total is not None else ""), eta_s=total)
            entry = _save_inputs(studio, p, run)
            result, clip, path = _generate(studio, p, run, entry.label, timeline, steps_for)
            timeline.resize(clip.width, clip.height, clip.num_frames)
            adherence = None
            if request.measure_adherence:
                adherence = measure_adherence(run, clip, path, timeline.step(steps_for["adherence"]))
            writer = ChainWriter(run, p, clip, _reference_image(p.image, result.crop_box), adherence,
                                 timeline, steps_for, cancel_event)
            if p.writes_generated:
                yield writer.record("none", clip, [])
            if p.post:
                t1 = time.perf_counter()
                yield from post_process(studio, p, clip, writer, timeline, steps_for, cancel_event)
                run.add_timing("post_process", time.perf_counter() - t1)
            table = _write_summary(run, writer.measures, result)
            timeline.finish(len(timeline.steps) - 1)
            emit(ProgressUpdate(1.0, "done", None, 0.0))
            run.finish()
            yield JobEvent("done", run.id, table=table, message="done")
    finally:
        # Stops a chain worker still running when the consumer went away mid-job.
        cancel_event.set()
        studio._forget(job_id)


# -- the steps ------------------------------------------------------------------------------------

def _create_run(studio: "Studio", p: JobPlan, user: str | None):
    from .runs import Run

    r, s = p.request, studio.settings
    return Run.create(studio.runs_root(user), kind="walkthrough", min_free_bytes=s.min_free_bytes,
                      free_space_fn=s.free_space_fn,
                      params={
                          **({"length": {**p.length.to_dict(), "save_frames": r.save_frames,
                                         "save_gif": r.save_gif}} if p.length else {}),
                          "model": r.model, "generator_params": p.params, "prompt": r.prompt,
                          "negative_prompt": r.negative_prompt,
                          "camera": r.camera.to_dict() if isinstance(r.camera, CameraSpec)
                          else {"mode": "path", "name": p.path.name},
                          "chains": p.chains, "roles": p.roles, "stage_params": p.stage_params,
                          "device": studio.device, "dtype": studio.dtype_name, "backend": studio.backend,
                      },
                      seeds={"generator": p.seed})


def _save_inputs(studio: "Studio", p: JobPlan, run):
    """The photo (as uploaded), the camera and the generator's identity go into the run first."""
    r = p.request
    if not r.resume_run:  # a resumed run keeps its input file as uploaded
        run.save_input_image(r.image_bytes if r.image_bytes else p.image, original_name=basename(r.image_name))
    run.write_json("camera", p.path.to_dict())
    if p.length is not None:
        longshot.save_shot_camera(run.dir, p.path)
    entry = studio.registry.get(r.model)
    run.add_model(r.model, kind="generator", label=entry.label, variant=entry.variant,
                  weights=weight_hashes(studio, entry))
    # the licences of every model that can touch the clips (generator and stages)
    run.update(licences=licence_record(studio.registry, [r.model, *p.stages]))
    return entry


def _generate(studio: "Studio", p: JobPlan, run, label: str, timeline, steps_for):
    """Generate on the device; returns (result, clip at the output rate, camera path), with the
    path the clip really follows recorded in the run."""
    r, generator, path = p.request, p.generator, p.path
    gen_prog = timeline.step(steps_for["generate"])
    t0 = time.perf_counter()
    request = GenerateRequest(p.image, path, r.prompt, r.negative_prompt, p.seed, p.params,
                              num_frames=p.length.num_frames if p.length else None,
                              segments=SegmentOptions(r.overlap), run_dir=run.dir if p.length else None)
    with studio._device_lock:
        gen_prog(0.0, f"{label}: starting")
        result: GenerateResult = studio._with_oom(lambda: generator.generate(request, gen_prog),
                                                  task=f"generating with {label}")
    timeline.finish(steps_for["generate"])
    run.add_timing("generate", time.perf_counter() - t0)
    run.update(generator_info=jsonable(result.record()))
    clip = result.clip
    zoom = float(result.info.get("zoom") or 1.0)
    if generator.camera_control and zoom != 1.0:
        # the preview zoomed in to stay inside the photo: a longer lens, same poses
        path = path.zoomed(zoom)
        run.write_json("camera", path.to_dict())
    if generator.camera_control and clip.num_frames != path.num_frames and clip.num_frames >= 2:
        # record the path the clip actually follows (e.g. kenburns resampled it)
        run.write_json("camera", path.resampled(clip.num_frames).to_dict())
    clip = longshot.to_output_fps(clip, p.length)  # AI long shots: native frames -> output fps
    if clip.num_frames != result.clip.num_frames:
        run.write_json("camera", path.resampled(clip.num_frames).to_dict())
    return result, clip, path


class ChainWriter:
    """Writes one chain's clip (video, optional PNG frames / GIF) and its metrics into the run.
    CPU work only: callers do not hold the device lock while it runs."""

    def __init__(self, run, p: JobPlan, clip: Clip, reference: np.ndarray, adherence: dict[str, Any] | None,
                 timeline, steps_for, cancel_event: threading.Event):
        self.run, self.plan, self.clip, self.reference, self.adherence = run, p, clip, reference, adherence
        self.timeline, self.steps_for, self.cancel_event = timeline, steps_for, cancel_event
        self.native = (clip.width, clip.height)
        self.measures: dict[str, dict[str, Any]] = {}

    def record(self, name: str, out: Clip, stages_info: list[dict[str, Any]]) -> JobEvent:
        from . import metrics as metriclib
        from .postprocess.interpolate import generator_rate_block

        run, r, timeline = self.run, self.plan.request, self.timeline
        write_step = self.steps_for["write " + name]
        wp = timeline.step(write_step)  # checks the cancel flag at every report
        wp(0.0, f"{name}: writing the video")
        t_write = time.perf_counter()
        run.add_chain(name, stages=stages_info)
        # x264's "veryfast" encodes a 2048x1280 clip ~3x faster than "medium" at the same crf
        fast = {"preset": "veryfast"} if out.width * out.height > 1_000_000 else {}
        # Metrics (mostly single-threaded NumPy) run beside the encoders (ffmpeg, zlib):
        # on 2 cores the two overlap instead of taking turns.
        measuring = _Background(lambda: metriclib.measure(out, reference_image=self.reference,
                                                          common_size=self.native, study=True))
        try:
            video = run.write_chain_video(name, out, progress=Progress(
                lambda f, m: wp(0.6 * f, f"{name}: {m}"), self.cancel_event), **fast)
            frames_dir = run.write_chain_video(name, out, "png") if r.save_frames else None
            if r.save_gif:
                run.write_chain_video(name, out, "gif")
            wp(0.6, f"{name}: measuring temporal consistency")
        finally:
            m = measuring.result()
        # temporal metrics at the generator's frame rate too (interpolation changes it)
        m["generator_rate"] = generator_rate_block(out, self.clip.fps, self.clip.num_frames, m, metriclib.measure,
                                                   common_size=self.native, study=True)
        if self.adherence is not None:  # post-processing keeps the camera: one score for all
            m["adherence"] = self.adherence
        run.add_chain(name, metrics=m)
        self.measures[name] = m
        run.update(metrics={name: m})
        run.add_timing(f"write {name}", time.perf_counter() - t_write)
        timeline.finish(write_step)
        return JobEvent("chain" if name != "none" else "generated", run.id, name, video, frames_dir, m)


def post_process(studio: "Studio", p: JobPlan, clip: Clip, writer: ChainWriter, timeline, steps_for,
                 cancel_event: threading.Event) -> Iterator[JobEvent]:
    """Run the chains, yielding each chain's event as soon as it is written.

    The chains compute on the device in a worker thread; each finished chain comes back over a
    queue and is written (encoded, measured) here, in the job's thread, while the worker gives
    the device up: CPU work never keeps another job off the device. The worker takes the device
    back when the write has ended, so one job's steps still run in order (its timeline, progress
    and memory are as if it ran alone).
    """
    post_prog = timeline.step(steps_for["post"])
    finished: queue.Queue = queue.Queue()  # (ChainResult, written) items, then _DONE or the worker's error
    device = studio._device_lock

    def on_result(res: chainlib.ChainResult) -> None:  # in the worker, which holds the device once
        written = threading.Event()
        finished.put((res, written))
        device.release()
        try:
            # a job whose consumer went away sets its cancel flag; the next stage then stops
            while not written.wait(0.5) and not cancel_event.is_set():
                pass
        finally:
            device.acquire()

    def work() -> None:
        try:
            with device:
                studio._with_oom(lambda: chainlib.run_chains(
                    clip, p.post, p.stage_params, post_prog, stages_by_name=p.stages,
                    on_result=on_result, stage_progress=lambda k, prefix: timeline.step(steps_for[prefix])),
                    task="post-processing")
        except BaseException as exc:  # re-raised in the job's thread
            finished.put(exc)
        else:
            finished.put(_DONE)

    worker = threading.Thread(target=work, name="studio-chains", daemon=True)
    worker.start()
    while True:
        item = finished.get()
        if item is _DONE:
            break
        if isinstance(item, BaseException):
            worker.join()
            raise item
        res, written = item
        try:
            event = writer.record(res.name, res.clip, [r.to_dict() for r in res.records])
        except BaseException:
            cancel_event.set()  # the worker stops at its next step instead of computing for nothing
            raise
        finally:
            written.set()
        yield event
    worker.join()


_DONE = object()  # end of the chain worker's results


def _write_summary(run, measures: dict[str, dict[str, Any]], result: GenerateResult) -> list[dict[str, Any]]:
    from . import metrics as metriclib

    table = metriclib.summary_table(measures)
    run.write_json("metrics", {"chains": measures, "table": table, "seams": result.info.get("seams"),
                               "table_common": metriclib.summary_table(measures, variant="common"),
                               "table_study": metriclib.summary_table(measures, variant="study"),
                               "table_generator_rate": metriclib.summary_table(
                                   {k: m["generator_rate"] for k, m in measures.items()}, variant="common")})
    return table


def measure_adherence(run, clip: Clip, path: cam.CameraPath, prog: Progress) -> dict[str, Any]:
    """Camera adherence of the generated clip (CPU; outside the device lock). The full result
    (per-frame errors, both trajectories) goes to run.json; the summary is returned."""
    from .adherence import measure_adherence as measure

    t0 = time.perf_counter()
    full = measure(clip, path, progress=prog)
    run.add_timing("adherence", time.perf_counter() - t0)
    run.update(adherence=jsonable(full))
    keys = ("available", "estimator", "RotErr", "RotErr_deg", "TransErr", "CamMC", "reason")
    return {k: full[k] for k in keys if k in full}

# -- small helpers ---------------------------------------------------------------------------------

class _Background:
    """fn() started in a daemon thread at once; `result()` joins it and returns (or raises) its
    outcome. A failure elsewhere still joins it (no thread outlives its job's files)."""

    def __init__(self, fn: Callable[[], Any]):
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn())
            except BaseException as exc:  # re-raised by result()
                self._err.append(exc)

        self._t = threading.Thread(target=run, name="studio-measure", daemon=True)
        self._t.start()

    def result(self) -> Any:
        self._t.join()
        if self._err:
            raise self._err[0]
        return self._out[0]


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _reference_image(image: np.ndarray, crop_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """The photo region the clip shows (the generator's typed crop box, photo pixels), for fidelity."""
    if crop_box is not None:
        x0, y0, x1, y1 = crop_box
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            return np.ascontiguousarray(image[y0:y1, x0:x1])
    return image


def weight_hashes(studio: "Studio", entry) -> dict[str, str]:
    """sha256 of each weight file: from models.json when given, else computed once and cached."""
    out = {}
    for f in entry.files:
        p = f.resolve(studio.registry.root)
        if f.sha256:
            out[f.path] = f.sha256
        elif p.is_file():
            out[f.path] = cached_sha256_file(p)
    return out
