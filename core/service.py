"""The service object: one plain method per user action, called by the dashboard and the CLI.

`Studio` owns the model registry, the model manager (models stay resident between requests),
the outputs folder and the one device lock. It accepts and returns plain Python / NumPy values
and file paths; it never imports gradio.

The service is a facade over three modules: `core.contracts` (the typed requests and answers,
and the one place free-form input is parsed), `core.catalogue` (which code builds and loads each
model variant) and `core.walkthrough` (the job pipeline behind `run_job`: plan -> generate ->
write -> post-process -> write each chain, yielding a `JobEvent` after each product).

Over ~450 lines on purpose: the facade is one method per user action (the dashboard's buttons
included, at the end of the class), each a few lines over those modules; splitting it would
split the one list of what the dashboard and the CLI may do.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import camera as cam
from . import catalogue
from . import longshot
from .catalogue import STAGE_KINDS
from .catalogue import backend_hint, offered_backends  # noqa: F401 - re-exported for app.py
from .contracts import CameraSpec, JobRequest, ModelInfo, StudioSettings  # noqa: F401 - re-exported
from .contracts import basename as _basename
from .contracts import camera_path as _camera_path
from .contracts import check_seed as _check_seed
from .contracts import normalise_chains
from .errors import InputError, StudioError, Unavailable
from .generators.base import GenerateRequest, Generator, SegmentOptions
from .jobs import JobEvent, JobInfo, JobRegistry, ProgressUpdate  # JobEvent: re-exported
from .licences import check_commercial
from .postprocess import chains as chainlib
from .params import resolve_params
from .photo import check_photo as _check_image
from .postprocess.base import Stage
from .progress import Progress, ProgressFn, as_progress
from .registry import FETCH_COMMAND, Availability, ModelEntry, Registry
from .jobplan import stages_for
from .walkthrough import run_walkthrough

# --------------------------------------------------------------------------------- the service

class Studio:
    """The one object the UI and the CLI talk to. Cheap to construct: loads no model."""

    def __init__(self, settings: StudioSettings | None = None, *, registry: Registry | None = None,
                 manager: Any = None):
        self.settings = settings or StudioSettings()
        self._messages: list[str] = []
        self.registry = registry if registry is not None else self._load_registry()
        self.device = catalogue.pick_device(self.settings.device)
        self.dtype_name = catalogue.pick_dtype(self.settings.dtype, self.device)
        self.backend = catalogue.pick_backend(self.settings.backend, self.device)
        if self.backend != "torch":
            self.dtype_name = "fp32"  # OpenVINO converts the float32 networks
        self._manager = manager
        self._device_lock = threading.RLock()  # one job on the device at a time (UI, API and CLI)
        self._generators: dict[str, Generator] = {}
        self._stages: dict[str, Stage] = {}
        # Server-owned jobs (see core/jobs.py) and the cancel flags of jobs run inline (CLI, study).
        self.jobs = JobRegistry()
        self._rates = None  # core.eta.RateBook, created on first job
        self._captioner_cache = None
        self._clean_stale_files()

    # -- set-up ---------------------------------------------------------------------------
    def _load_registry(self) -> Registry:
        return catalogue.load_registry(self.settings.models, self.settings.root, self._messages)

    def _clean_stale_files(self) -> None:
        """Hidden temporaries a killed process left in run folders go at start-up."""
        from .runs import clean_stale_temporaries

        if self.settings.outputs.is_dir():
            try:
                clean_stale_temporaries(self.settings.outputs)
            except OSError as exc:  # an unreadable folder must not stop the service
                self._messages.append(f"Could not clean temporary files in {self.settings.outputs}: {exc}")

    def runs_root(self, user: str | None = None) -> Path:
        """Where `user`'s runs live: the outputs folder, or with per-user runs and a user name,
        <outputs>/users/<user folder>/."""
        from .runs import USERS_DIR, user_folder

        if not self.settings.per_user_runs or not user:
            return self.settings.outputs
        return self.settings.outputs / USERS_DIR / user_folder(user)

    def startup_messages(self) -> list[str]:
        """Problems found at start-up that the user should see (e.g. a broken models.json)."""
        return list(self._messages)

    @property
    def manager(self):
        """The model manager, created on first use (importing torch only then)."""
        if self._manager is None:
            from .manager import ModelManager

            self._manager = ModelManager(self.device, budget_bytes=self.settings.memory_budget_bytes)
        return self._manager

    def preload_models(self) -> list[str]:
        """Load the models named in settings.preload now; returns those resident afterwards."""
        names = [n for n in self.settings.preload if n]
        for n in names:
            self.registry.get(n)  # a typo is a clear ConfigError at start-up
            self.registry.require_files(n)
            self.manager.register(n, self._loader_for(n))
        return self.manager.preload(names) if names else []

    # -- catalogue ------------------------------------------------------------------------
    def availability(self, name: str) -> Availability:
        entry = self.registry.get(name)
        return self.registry.availability(entry, has_gpu=self.device.startswith("cuda"))

    def model_infos(self, kind: str | None = None) -> list[ModelInfo]:
        """Every registry entry (of one kind), available ones first in registry order."""
        infos = []
        for e in self.registry:
            if kind and e.kind != kind:
                continue
            av = self.availability(e.name)
            extra: dict[str, Any] = {}
            try:
                if e.kind == "generator":
                    g = self._construct_generator(e)
                    catalogue.check_defaults(self.registry, e, g.param_specs())
                    extra = dict(is_ai=g.is_ai, camera_control=g.camera_control, width=g.width, height=g.height,
                                 num_frames=g.num_frames, fps=g.fps, params=tuple(g.param_specs()))
                elif e.kind in STAGE_KINDS:
                    s = self._construct_stage(e)
                    catalogue.check_defaults(self.registry, e, s.param_specs())
                    extra = dict(role=s.role, params=tuple(s.param_specs()))
            except StudioError as exc:
                av = Availability(False, str(exc))
            infos.append(ModelInfo(e.name, e.kind, e.variant, e.label, e.description, e.license, e.needs_gpu,
                                   av.available, av.reason, commercial_use=e.commercial_use,
                                   license_url=e.license_url, **extra))
        infos.sort(key=lambda i: not i.available)
        return infos

    def default_generator(self) -> str:
        """The best available generator: CamI2V 512x320 when its weights are present, else the
        first available AI generator, else the embedded preview."""
        infos = [i for i in self.model_infos("generator") if i.available]
        for preferred in ("cami2v-512",):
            if any(i.name == preferred for i in infos):
                return preferred
        ai = [i for i in infos if i.is_ai]
        return (ai or infos)[0].name if (ai or infos) else "kenburns"

    def generator(self, name: str) -> Generator:
        entry = self.registry.get(name)
        if entry.kind != "generator":
            raise InputError(f"{entry.label} is a {entry.kind}, not a video generator.")
        if name not in self._generators:
            self._generators[name] = self._construct_generator(entry)
        return self._generators[name]

    def stage(self, name: str) -> Stage:
        entry = self.registry.get(name)
        if entry.kind not in STAGE_KINDS:
            raise InputError(f"{entry.label} is a {entry.kind}, not a post-processing stage.")
        if name not in self._stages:
            self._stages[name] = self._construct_stage(entry)
        return self._stages[name]

    def _construct_generator(self, entry: ModelEntry) -> Generator:
        return catalogue.build(self.registry, entry, "generator", self._managed(entry.name))

    def _construct_stage(self, entry: ModelEntry) -> Stage:
        return catalogue.build(self.registry, entry, "stage", self._managed(entry.name))

    # -- model loading through the manager -----------------------------------------------
    def _loader_for(self, name: str) -> Callable[[Any], Any]:
        """`loader(device)` building the model of entry `name` (weights checked first)."""
        entry = self.registry.get(name)
        if entry.kind == "captioner":
            from .captioner import Qwen2VLCaptioner

            reg, cache = self.registry, self.settings.outputs / "cache"
            return lambda device: Qwen2VLCaptioner.from_registry(reg, entry.name, device=device, cache_dir=cache)
        return catalogue.model_loader(self.registry, entry, self.dtype_name, self.backend,
                                      self.settings.openvino_cache)

    def _managed(self, name: str) -> Callable[[], Any]:
        """A zero-argument callable returning the resident model `name` (loading it if needed)."""

        def get() -> Any:
            self.registry.require_files(name)
            return self.manager.get(name, self._loader_for(name))

        return get

    def model_status(self) -> list[dict[str, Any]]:
        """Loaded models (name, state, device, dtype, bytes, last used) for the status panel."""
        if self._manager is None:
            return []
        return self.manager.status()

    def memory_summary(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype_name,
                **(self.manager.summary() if self._manager is not None else {})}

    # -- inputs ---------------------------------------------------------------------------
    def load_image(self, source: str | os.PathLike | bytes) -> np.ndarray:
        """Decode an uploaded photo: (H, W, 3) uint8 RGB, EXIF-oriented; clear InputError otherwise."""
        from .video import load_image

        # the size and shape rules of a job apply at upload, so no caller ever draws a 1x1 photo
        return _check_image(load_image(source, max_megapixels=self.settings.max_megapixels,
                                       max_bytes=self.settings.max_image_bytes))

    def camera_path(self, spec: CameraSpec | cam.CameraPath, model: str = "kenburns",
                    num_frames: int | None = None) -> cam.CameraPath:
        """The camera path for `model`: its native frame count and aspect unless given."""
        if isinstance(spec, cam.CameraPath):
            spec.validate()
            return spec
        g = self.generator(model)
        return _camera_path(spec, int(num_frames or g.num_frames), g.width / g.height)

    # -- captioning -----------------------------------------------------------------------
    def captioner_status(self) -> Availability:
        """Whether the Caption button can work here, and if not, why."""
        from .captioner import select_captioner  # torch-free (core.captioner.options): asked while the page is built

        try:
            entry = select_captioner(self.registry, self.device)
        except StudioError as exc:
            return Availability(False, str(exc))
        except Exception as exc:  # transformers missing or broken
            return Availability(False, f"the captioner cannot be loaded here ({exc})")
        return Availability(True, entry.label)

    def caption(self, image: np.ndarray, prompt: str | None = None, model: str | None = None,
                progress: Progress | ProgressFn | None = None) -> str:
        """A one-line caption of the photo by the best available Qwen2-VL (cached by image hash)."""
        from .captioner import select_captioner

        prog = as_progress(progress)
        name = model or select_captioner(self.registry, self.device).name
        with self._device_lock:
            prog(0.0, f"loading {self.registry.get(name).label}")
            captioner = self._managed(name)()
            with self.manager.oom_guard(task="captioning", hints=("the image size",)):
                return captioner.caption(image, prompt or None, progress=prog.sub(0.05, 1.0))

    # -- jobs -----------------------------------------------------------------------------
    def new_job_id(self) -> str:
        return self.jobs.reserve()

    def cancel(self, job_id: str, user: str | None = None) -> bool:
        """Ask a queued or running job to stop at its next step; True if it was still going.
        With `user`, only that user's jobs (or jobs without an owner) are cancelled."""
        return self.jobs.cancel(job_id, user=user)

    # -- server-owned jobs (a closed page never cancels them) -----------------------------
    def submit_job(self, request: JobRequest, user: str | None = None) -> str:
        """Queue a walkthrough on the job worker and return its id at once. The job runs to
        its end (or until `cancel`) whoever follows it; `follow` streams its events."""
        name = request.image_name or "photo"
        return self.jobs.submit(
            lambda ctx: self.run_job(request, job_id=ctx.job_id, on_progress=ctx.report, user=user),
            kind="walkthrough", title=f"{request.model} · {_basename(name)}", user=user)

    def submit(self, body, *, kind: str, title: str = "", user: str | None = None) -> str:
        """Queue any long job: `body(context)` yields JobEvents (see core.jobs.JobContext)."""
        return self.jobs.submit(body, kind=kind, title=title, user=user)

    def follow(self, job_id: str, since: int = 0, *, coalesce_progress: bool = False) -> Iterator[JobEvent]:
        """A job's events from position `since`, as they happen, ending with done/failed/cancelled."""
        return self.jobs.follow(job_id, since, coalesce_progress=coalesce_progress)

    def active_jobs(self, user: str | None = None) -> list[JobInfo]:
        """Queued and running jobs, newest first (only `user`'s when given)."""
        return self.jobs.jobs(user=user)

    def job_info(self, job_id: str) -> JobInfo:
        return self.jobs.info(job_id)

    def wait_job(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job ends; its final info."""
        return self.jobs.wait(job_id, timeout)

    def job_events(self, job_id: str) -> list[JobEvent]:
        """The job's events so far (a copy of its log)."""
        return self.jobs.events(job_id)

    def job_of_run(self, run_id: str) -> str | None:
        """The id of this server's job that writes run `run_id`, if it has one."""
        return self.jobs.find_run(run_id)

    @property
    def rates(self):
        """Measured seconds per unit of work on this machine (ETAs), in settings.rates_file if set."""
        if self._rates is None:
            from .eta import RateBook

            self._rates = RateBook(self.settings.rates_file)
        return self._rates

    def run_job(self, request: JobRequest, progress: ProgressFn | None = None,
                job_id: str | None = None,
                on_progress: Callable[[ProgressUpdate], None] | None = None,
                user: str | None = None) -> Iterator[JobEvent]:
        """Generate and post-process one walkthrough, yielding an event after each product.

        Progress comes from a timeline of the job's steps (core.eta): `progress(fraction,
        message)` and `on_progress(ProgressUpdate)` (with stage and ETA from measured rates) are
        both called. The job stops between steps when `cancel(job_id)` is called. Iterating it
        directly ties the job to the caller; `submit_job` runs it on the server's worker instead.
        """
        return run_walkthrough(self, request, progress, job_id, on_progress, user)

    # -- tours (core.tour) ----------------------------------------------------------------
    def submit_tour(self, tour: Any = None, *, resume: str | None = None, user: str | None = None) -> str:
        """Queue a tour (or the resume of tour run `resume`) on the job worker, like `submit_job`:
        it runs to its end whoever follows it. Its log holds "started", one "chain" event per
        finished shot and for the joined tour, and "done"; each carries the `core.tour.TourEvent`
        in `detail`."""
        if tour is None and not resume:
            raise InputError("No tour to run.")
        if resume:
            self.open_run(resume, user)  # unknown or foreign: one clear line now, not in the job

        def body(ctx):
            report = lambda f, m: ctx.report(ProgressUpdate(f, m))  # noqa: E731
            for ev in self.run_tour(tour, report, job_id=ctx.job_id, resume=resume, user=user):
                kind = ev.kind if ev.kind in ("started", "done") else "chain"
                chain = f"shot-{ev.index:02d}" if ev.kind == "shot" else (ev.kind if kind == "chain" else None)
                yield JobEvent(kind, ev.run_id, chain=chain, video=ev.video, message=ev.message, detail=ev)

        title = f"tour · {len(tour.shots)} shot(s)" if tour is not None else f"resume tour {resume}"
        return self.jobs.submit(body, kind="tour", title=title, user=user)

    def run_tour(self, tour: Any = None, progress: ProgressFn | None = None, job_id: str | None = None,
                 resume: str | None = None, user: str | None = None) -> Iterator[Any]:
        """Render a `core.tour.Tour` shot by shot, yielding a `core.tour.TourEvent` after each
        shot and for the joined tour; `resume=run_id` finishes a cancelled or failed tour run
        (finished shots are kept). `cancel(job_id)` stops it between frames."""
        from .tour import iter_tour

        job_id = job_id or self.new_job_id()
        cancel_event = self.jobs.cancel_event(job_id)
        try:
            yield from iter_tour(self, tour, Progress(progress, cancel_event), resume=resume, user=user)
        finally:
            cancel_event.set()
            self._forget(job_id)
    # -- end of tours -----------------------------------------------------------------------

    def _stages_for(self, chains: Sequence[Any], roles: Mapping[str, str]) -> dict[str, Stage]:
        """Stage instances for every stage the chains (texts or parsed) use, availability checked first."""
        return stages_for(self, chains, roles)

    def check_commercial(self, model: str, chains: Sequence[Any], roles: Mapping[str, str] | None = None) -> None:
        """InputError with the reason when the generator `model` or a stage of `chains` (chain
        texts, role words resolved with `roles`, or a plan's parsed chains) has a licence that
        does not allow commercial use."""
        roles = {**chainlib.DEFAULT_ROLES, **dict(roles or {})}
        known = tuple(e.name for e in self.registry if e.kind in STAGE_KINDS)
        names = [model]
        if chains and all(isinstance(c, chainlib.ParsedChain) for c in chains):
            parsed = list(chains)  # parsed once by a job's plan
        else:
            parsed = [chainlib.resolve_chain(c, roles, extra=known) for c in normalise_chains(chains)]
        for c in parsed:
            names += c.stages
        check_commercial(self.registry, names)

    def _require_available(self, name: str) -> None:
        """Unavailable with the reason (and, when weights are missing, the command that fetches them)."""
        av = self.availability(name)
        if av.available:
            return
        entry = self.registry.get(name)
        msg = f"{entry.label} cannot run here: {av.reason}"
        missing = self.registry.missing_files(entry)
        if missing and (missing[0].repo or missing[0].url):
            msg += f"; fetch the weights with `{FETCH_COMMAND.format(name=entry.name)}`"
        raise Unavailable(msg + ".")

    def _with_oom(self, fn: Callable[[], Any], task: str) -> Any:
        """Run device work; out-of-memory frees idle models and retries once, else OutOfMemory."""
        return self.manager.run_with_oom_recovery(fn, task=task)

    def _forget(self, job_id: str) -> None:
        self.jobs.release(job_id)

    # -- long shots: resume a partial run ------------------------------------------------
    def submit_resume(self, run_id: str, user: str | None = None) -> str:
        """Queue `resume(run_id)` on the job worker (like `submit_job`); returns the job id."""
        self.open_run(run_id, user)  # an unknown or foreign run is one clear line now, not in the job
        return self.jobs.submit(
            lambda ctx: self.resume(run_id, job_id=ctx.job_id, on_progress=ctx.report, user=user),
            kind="resume", title=f"resume {run_id}", user=user)

    def resume(self, run_id: str, progress: ProgressFn | None = None,
               job_id: str | None = None, user: str | None = None,
               on_progress: Callable[[ProgressUpdate], None] | None = None) -> Iterator[JobEvent]:
        """Continue partial long-shot run `run_id` in its own folder from its last finished
        segment; yields the same events as `run_job` and the same frames an uninterrupted run
        gives (same request, seeds and saved conditioning frames)."""
        run = self.open_run(run_id, user)
        fields = longshot.resume_fields(run)
        inp = (run.data.get("input") or {}).get("file")
        if not inp:
            raise InputError(f"Run {run_id} has no saved input photo to resume from.")
        image = self.load_image(run.dir / inp)
        return self.run_job(JobRequest(image, **fields), progress, job_id, on_progress=on_progress, user=user)

    def _reopen_run(self, run_id: str, user: str | None = None):
        """A partial run reopened for `resume`, marked running again by this process."""
        from .runs import Run

        run = Run.open(self.runs_root(user), run_id, min_free_bytes=self.settings.min_free_bytes,
                       free_space_fn=self.settings.free_space_fn)
        if run.status == "complete":
            raise InputError(f"Run {run_id} is complete; there is nothing to resume.")
        run.update(status="running", error=None, pid=os.getpid())
        return run

    def shot_plan(self, model: str, seconds: float | None, output_fps: float | None = None, overlap: int = 1,
                  params: Mapping[str, Any] | None = None):
        """(LengthPlan or None, SegmentPlan or None) of a shot, without loading anything: what the
        Create tab shows (frame count, segment boundaries in the 3D path view)."""
        from .generators.segments import plan_segments

        generator = self.generator(model)
        p = resolve_params(generator.param_specs(), params or {}, self.registry.get(model).defaults)
        length = longshot.plan_length(generator, p, seconds, output_fps, overlap)
        if length is None or generator.any_length:
            return length, None
        native = int(p.get("num_frames") or generator.num_frames)
        return length, plan_segments(length.num_frames, native, overlap)

    def generate_shot(self, image: np.ndarray, camera: CameraSpec | cam.CameraPath, model: str = "kenburns", *,
                      seconds: float | None = None, output_fps: float | None = None, prompt: str = "",
                      negative_prompt: str = "", seed: int = 0, params: Mapping[str, Any] | None = None,
                      overlap: int = 1, run_dir: Path | None = None,
                      progress: Progress | ProgressFn | None = None):
        """One shot of `seconds` at `output_fps` (the generator's own length/rate when None), for
        callers that manage their own folders (tours). Finished segments go to `run_dir` when
        given, so the same call resumes there. Returns a GenerateResult (clip at the output fps;
        info["seams"] for chained shots)."""
        generator = self.generator(model)
        self._require_available(model)
        p = resolve_params(generator.param_specs(), params or {}, self.registry.get(model).defaults)
        length = longshot.plan_length(generator, p, seconds, output_fps, overlap)
        p = longshot.generator_params(generator, p, length)
        path = self.camera_path(camera, model, length.num_frames if length else None)
        req = GenerateRequest(_check_image(image), path, prompt, negative_prompt, _check_seed(seed), p,
                              num_frames=length.num_frames if length else None, segments=SegmentOptions(overlap),
                              run_dir=Path(run_dir) if run_dir is not None and length else None)
        with self._device_lock:
            result = self._with_oom(lambda: generator.generate(req, as_progress(progress)),
                                    task=f"generating with {generator.label}")
        clip = longshot.to_output_fps(result.clip, length)
        return result if clip is result.clip else dataclasses.replace(result, clip=clip,
                                                                       info={**result.info, "fps": clip.fps})

    # -- history --------------------------------------------------------------------------
    def list_runs(self, limit: int | None = 50, user: str | None = None):
        """`user`'s runs (everyone's without per-user runs), newest first."""
        from .runs import list_runs

        return list_runs(self.runs_root(user), limit=limit)

    def open_run(self, run_id: str, user: str | None = None):
        """One of `user`'s runs; another user's run id is "no such run" (InputError)."""
        from .runs import Run

        return Run.open(self.runs_root(user), run_id)

    # -- dashboard actions: one method per button (weights, studies, exports) ---------------
    # The dashboard calls these and nothing below them; each takes and returns plain values.
    def download_weights(self, name: str, progress: Progress | ProgressFn | None = None) -> list[Any]:
        """Fetch and verify every file of entry `name` (core.weights.fetch); one report per file.
        Availability is read from the files at every `model_infos` call, so the model is offered
        as soon as this returns, without a restart."""
        from .weights import fetch

        self.registry.get(name)  # an unknown name is one clear line before anything is fetched
        return fetch(self.registry, name, progress=progress)

    def camera_problem(self, model: str, path: cam.CameraPath) -> str | None:
        """What generator `model` would refuse about `path` before it runs (the Ken Burns
        preview's turn limit); None when nothing is known to be wrong."""
        entry = self.registry.get(model)
        if entry.kind != "generator" or entry.variant != "kenburns":
            return None
        from .generators.kenburns import camera_problem

        g = self.generator(model)
        return camera_problem(path, g.width, g.height)

    def run_study(self, images: Sequence[str | os.PathLike], paths: Sequence[str], chains: Sequence[str],
                  model: str, seed: int = 0, roles: Mapping[str, str] | None = None, *, user: str | None = None,
                  job_id: str | None = None, progress: ProgressFn | None = None):
        """Start a study (every photo x camera move, all chains) in a fresh folder of `user`'s
        runs; returns (core.study.StudySpec, folder, iterator of core.study.StudyEvent). Input
        errors raise here, before a folder exists. The study stops at its next step after
        `cancel(job_id)` (an id from `new_job_id`); its cancel flag is released when the
        iterator ends (or here, on an input error)."""
        from . import study as studylib

        job = job_id or ""
        try:
            if not images:
                raise InputError("Upload photos or include the example rooms.")
            spec = studylib.StudySpec(
                images=tuple(studylib.find_images(list(images))), paths=studylib.parse_paths(list(paths or [])),
                chains=studylib.parse_chains(list(chains or [])), model=model, seed=int(seed or 0),
                roles=dict(roles or {}))
            out = studylib.new_study_dir(self.runs_root(user))
        except BaseException:
            self.jobs.release(job)
            raise

        def events() -> Iterator[Any]:
            try:
                yield from studylib.iter_study(self, spec, out, Progress(progress, self.jobs.cancel_event(job)))
            finally:
                self.jobs.release(job)

        return spec, out, events()

    def zip_study(self, out: str | os.PathLike) -> Path:
        """study.zip of a finished study folder: reports, records and every video."""
        from .study import zip_study

        return zip_study(out)

    def export_chains(self, run_id: str, user: str | None = None) -> list[str]:
        """The chains of one of `user`'s runs that have a video, in run order."""
        from .exports import chain_names

        return chain_names(self.open_run(run_id, user))

    def export_run(self, run_id: str, chain: str | None, formats: Sequence[str], watermark_text: str = "",
                   invisible: bool = False, *, user: str | None = None,
                   progress: Progress | ProgressFn | None = None) -> Path:
        """One zip of `user`'s run in the chosen formats (chain None or "all": every chain), with
        the visible and/or this installation's invisible watermark."""
        from .exports import Watermark, zip_run

        wm = Watermark(text=watermark_text or "", invisible=bool(invisible))
        return zip_run(self.open_run(run_id, user), None if chain in (None, "all") else chain, list(formats or []),
                       wm, progress=progress)

    def check_watermark(self, path: str | os.PathLike):
        """Whether a video carries this installation's invisible watermark (core.exports.Detection)."""
        from .exports import detect_file, installation_key

        return detect_file(path, installation_key(self.settings.outputs))

    def difference_video(self, a: str | os.PathLike, b: str | os.PathLike, out: str | os.PathLike):
        """The per-frame |A - B| heat-map video of two clips written to `out` (core.compare:
        size, per-frame mean differences); StudioError with the reason when they cannot be compared."""
        from .compare import difference_video

        return difference_video(a, b, out)
