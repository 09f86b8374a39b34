"""The service object: one plain method per user action, called by the dashboard and the CLI.

`Studio` owns the model registry, the model manager (models stay resident between requests),
the outputs folder and the one device lock. It accepts and returns plain Python / NumPy values
and file paths; it never imports gradio.

A walkthrough job (`Studio.run_job`) is: save the input -> generate -> write the generator's clip
-> run every requested post-processing chain (shared prefixes computed once) -> write each
chain's video and metrics as soon as it exists. It yields a `JobEvent` after each of those steps
so the UI can show results while later chains still run, and it records everything in the run's
`run.json` as it goes, so a failure or a cancel later in the job loses nothing already produced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import camera as cam
from . import limits
from .clip import Clip
from .errors import ConfigError, InputError, StudioError, Unavailable
from . import longshot
from .generators.base import GenerateRequest, Generator, SegmentOptions
from .jobs import JobEvent, JobInfo, JobRegistry, ProgressUpdate  # JobEvent: re-exported
from .params import ParamSpec, resolve_params
from .postprocess import chains as chainlib
from .postprocess.base import Stage
from .progress import Progress, ProgressFn, as_progress
from .registry import FETCH_COMMAND, Availability, ModelEntry, Registry

# Entries that must exist even when models.json is missing or broken: the embedded default
# does the whole job with no weights and no GPU.
BUILTIN_MODELS: dict[str, Any] = {
    "kenburns": {
        "kind": "generator", "variant": "kenburns", "label": "Ken Burns preview (no AI)",
        "description": "Moves a virtual camera over the photo as if it were a flat picture. Instant, "
                       "needs no weights or GPU; no parallax and nothing new is imagined.",
        "license": "MIT (this project)",
    },
    "nlmeans": {
        "kind": "denoiser", "variant": "nlmeans", "label": "OpenCV temporal NL-means",
        "description": "Non-local means over a 5-frame window (OpenCV). No weights.",
        "license": "Apache-2.0 (OpenCV)",
    },
    "lanczos": {
        "kind": "upscaler", "variant": "lanczos", "label": "Lanczos x2/x4",
        "description": "Classical Lanczos resampling (OpenCV). No weights.",
        "license": "Apache-2.0 (OpenCV)",
    },
    # -- frame interpolation (role "interpolate") --
    "dis-interp": {
        "kind": "interpolator", "variant": "dis-interp", "label": "Optical-flow interpolation (DIS)",
        "description": "New frames between frames (x2/x3/x4 or a target fps) from OpenCV DIS optical flow in "
                       "both directions, blended where the flow is consistent (occlusion-aware). No weights.",
        "license": "Apache-2.0 (OpenCV)",
    },
}

ROLE_KIND = {"denoise": "denoiser", "upscale": "upscaler", "interpolate": "interpolator"}
STAGE_KINDS = tuple(ROLE_KIND.values())

# Variants whose weights the model manager holds: variant -> (what, module, class). Each module
# provides `load_model(registry, entry, *, device, dtype)`, and the class `from_entry(entry,
# load_model)` where `load_model()` returns the resident model.
MANAGED_VARIANTS: dict[str, tuple[str, str, str]] = {
    "cami2v": ("generator", "core.generators.cami2v", "CamI2VGenerator"),
    "svd": ("generator", "core.generators.svd", "SVDGenerator"),
    "fastdvdnet": ("stage", "core.postprocess.fastdvdnet", "FastDVDnetStage"),
    "upscale-a-video": ("stage", "core.postprocess.upscale_a_video", "UpscaleAVideoStage"),
    "rife": ("stage", "core.postprocess.rife", "RIFEStage"),
}
MAX_ASPECT = 20  # longest photo side / shortest (panoramas are 2:1 to 8:1)


# --------------------------------------------------------------------------------- settings

@dataclass
class StudioSettings:
    """Where things live and how to run. Paths may be relative to `root`."""

    root: Path = Path(__file__).resolve().parents[1]
    models: Path | None = None  # default root/models.json
    outputs: Path | None = None  # default root/outputs
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16
    # torch | openvino | openvino-int8: how the CPU runs the CamI2V and SVD networks
    # (core.models.openvino_backend; IR cached under openvino_cache, default root/ckpts/openvino-cache)
    backend: str = "torch"
    openvino_cache: Path | None = None
    preload: tuple[str, ...] = ()
    max_image_bytes: int = 50 * 1024**2
    max_megapixels: float = 40.0
    memory_budget_bytes: int | None = None  # None: taken from the device
    min_free_bytes: int = 256 * 1024**2
    # free_space_fn(path) -> free bytes, in place of shutil.disk_usage (tests simulate a full disk)
    free_space_fn: Callable[[Path], int] | None = None
    # Where measured speeds (for time-left estimates) are kept across restarts; None: memory only.
    rates_file: Path | None = None
    # True (the dashboard with --auth, unless --shared-runs): each user's runs go to, and are
    # listed and opened only from, <outputs>/users/<user folder>/ (see Studio.runs_root).
    per_user_runs: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.models = self._abs(self.models or "models.json")
        self.outputs = self._abs(self.outputs or "outputs")
        self.openvino_cache = self._abs(self.openvino_cache or Path("ckpts") / "openvino-cache")

    def _abs(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.root / p


# --------------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class CameraSpec:
    """How the user described the camera move; `Studio.camera_path` turns it into a CameraPath.

    mode "preset": `preset`, `amount`, `distance`, `easing`.
    mode "keyframes": `keyframes` (list of dicts: time, position [x, y, z], yaw, pitch, roll).
    mode "waypoints": `waypoints` (list of normalised (x, y) clicks on the photo), `depth`, `amount`
    (the share of the clicked walk the clip covers; None: all of it).
    mode "file": `text` of a RealEstate10K camera file (resampled to the clip's frame count,
    then `distance` scales its translations).
    """

    mode: str = "preset"
    preset: str = "push-in"
    amount: float | None = None
    distance: float | None = None
    easing: str = "linear"
    keyframes: tuple[Mapping[str, Any], ...] = ()
    waypoints: tuple[tuple[float, float], ...] = ()
    depth: float = 1.0
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"mode": self.mode}
        if self.mode == "preset":
            d.update(preset=self.preset, amount=self.amount, distance=self.distance, easing=self.easing)
        elif self.mode == "keyframes":
            d.update(keyframes=[dict(k) for k in self.keyframes])
        elif self.mode == "waypoints":
            d.update(waypoints=[list(p) for p in self.waypoints], depth=self.depth, amount=self.amount)
        elif self.mode == "file":
            d.update(distance=self.distance)
        return d


@dataclass(frozen=True)
class JobRequest:
    """One walkthrough: a photo, a camera move, a generator and the chains to compare.

    image: (H, W, 3) uint8 RGB as displayed (EXIF applied); image_bytes: the uploaded file, kept
    verbatim in the run folder when given. chains: chain texts ("none", "denoise+upscale", ...).
    roles: which stage plays "denoise" / "upscale". stage_params: stage name -> parameters.
    """

    image: np.ndarray
    camera: CameraSpec | cam.CameraPath = field(default_factory=CameraSpec)
    model: str = "kenburns"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ("none",)
    roles: Mapping[str, str] = field(default_factory=lambda: dict(chainlib.DEFAULT_ROLES))
    stage_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    image_bytes: bytes | None = None
    image_name: str | None = None
    save_frames: bool = False
    save_gif: bool = False
    # Estimate the clip's camera by structure from motion and score it against the requested
    # path (CamI2V's RotErr / TransErr / CamMC); seconds of CPU per clip.
    measure_adherence: bool = False
    # -- long shots (core.longshot): None keeps the generator's own length and rate. Fixed-length
    # models chain segments sharing `overlap` frames; `resume_run` continues that partial run.
    seconds: float | None = None
    output_fps: float | None = None
    overlap: int = 1
    resume_run: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the UI needs to list a model and show its controls."""

    name: str
    kind: str
    variant: str
    label: str
    description: str
    license: str
    needs_gpu: bool
    available: bool
    reason: str
    is_ai: bool = True
    camera_control: bool = True
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: float | None = None
    role: str | None = None
    params: tuple[ParamSpec, ...] = ()

    @property
    def display(self) -> str:
        return self.label if self.available else f"{self.label} (unavailable: {self.reason})"


# --------------------------------------------------------------------------------- the service

class Studio:
    """The one object the UI and the CLI talk to. Cheap to construct: loads no model."""

    def __init__(self, settings: StudioSettings | None = None, *, registry: Registry | None = None,
                 manager: Any = None):
        self.settings = settings or StudioSettings()
        self._messages: list[str] = []
        self.registry = registry if registry is not None else self._load_registry()
        self.device = _pick_device(self.settings.device)
        self.dtype_name = _pick_dtype(self.settings.dtype, self.device)
        self.backend = _pick_backend(self.settings.backend, self.device)
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
        path = self.settings.models
        builtin = Registry.from_dict({"models": BUILTIN_MODELS}, root=self.settings.root, source="built-in")
        try:
            reg = Registry.load(path, root=self.settings.root)
        except ConfigError as exc:
            self._messages.append(f"{exc} Only the built-in models (no weights needed) are offered.")
            return builtin
        try:
            _check_builtin_defaults(reg)
        except ConfigError as exc:
            self._messages.append(f"{exc} Only the built-in models (no weights needed) are offered.")
            return builtin
        missing = [e for e in builtin if e.name not in reg]
        return Registry(list(reg) + missing, root=reg.root, source=reg.source) if missing else reg

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
                    _check_defaults(self.registry, e, g.param_specs())
                    extra = dict(is_ai=g.is_ai, camera_control=g.camera_control, width=g.width, height=g.height,
                                 num_frames=g.num_frames, fps=g.fps, params=tuple(g.param_specs()))
                elif e.kind in STAGE_KINDS:
                    s = self._construct_stage(e)
                    _check_defaults(self.registry, e, s.param_specs())
                    extra = dict(role=s.role, params=tuple(s.param_specs()))
            except StudioError as exc:
                av = Availability(False, str(exc))
            infos.append(ModelInfo(e.name, e.kind, e.variant, e.label, e.description, e.license, e.needs_gpu,
                                   av.available, av.reason, **extra))
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
        if entry.variant == "kenburns":
            from .generators.kenburns import KenBurnsGenerator

            return KenBurnsGenerator()
        return self._construct_managed(entry, "generator")

    def _construct_stage(self, entry: ModelEntry) -> Stage:
        if entry.variant in ("nlmeans", "lanczos", "dis-interp"):
            return chainlib.create_stage(entry.variant)
        return self._construct_managed(entry, "stage")

    def _construct_managed(self, entry: ModelEntry, what: str):
        """A generator or stage whose model the manager holds (see MANAGED_VARIANTS)."""
        spec = MANAGED_VARIANTS.get(entry.variant)
        if spec is None or spec[0] != what:
            raise ConfigError(f"{self.registry.source}: entry {entry.name!r}, field 'variant': "
                              f"unknown {what} variant {entry.variant!r}.")
        cls = getattr(importlib.import_module(spec[1]), spec[2])
        return cls.from_entry(entry, load_model=self._managed(entry.name))

    # -- model loading through the manager -----------------------------------------------
    def _loader_for(self, name: str) -> Callable[[Any], Any]:
        """`loader(device)` building the model of entry `name` (weights checked first)."""
        entry = self.registry.get(name)
        reg, dtype = self.registry, self.dtype_name
        if entry.kind == "captioner":
            from .captioner import Qwen2VLCaptioner

            cache = self.settings.outputs / "cache"
            return lambda device: Qwen2VLCaptioner.from_registry(reg, entry.name, device=device, cache_dir=cache)
        spec = MANAGED_VARIANTS.get(entry.variant)
        if spec is None:
            raise ConfigError(f"{reg.source}: entry {entry.name!r} has no loadable model (variant {entry.variant!r}).")
        load = importlib.import_module(spec[1]).load_model
        if self.backend != "torch" and entry.variant in ("cami2v", "svd"):
            from .models.openvino_backend import OpenVINOOptions, with_backend

            options = OpenVINOOptions.for_backend(self.backend, self.settings.openvino_cache)
            return lambda device: with_backend(load(reg, entry, device="cpu", dtype="fp32"), entry.variant, options)
        return lambda device: load(reg, entry, device=device, dtype=dtype)

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
        n = int(num_frames or g.num_frames)
        aspect = g.width / g.height
        if spec.mode == "preset":
            return cam.preset_path(spec.preset, num_frames=n, amount=spec.amount, distance=spec.distance,
                                   aspect=aspect, easing=spec.easing)
        if spec.mode == "keyframes":
            limits.check_rows(len(spec.keyframes), "The keyframe table", limits.MAX_KEYFRAMES)
            kfs = [cam.Keyframe.from_dict(k) for k in spec.keyframes]
            return cam.keyframe_path(kfs, num_frames=n, aspect=aspect)
        if spec.mode == "waypoints":
            limits.check_rows(len(spec.waypoints), "The waypoints", limits.MAX_WAYPOINTS)
            if spec.amount is None or spec.amount >= 1.0:
                return cam.waypoint_path(spec.waypoints, num_frames=n, depth=spec.depth, aspect=aspect)
            # move amount: the clip covers the first part of the clicked walk (as for presets)
            return _leading_part(cam.waypoint_path(spec.waypoints, num_frames=max(64, 16 * n), depth=spec.depth,
                                                   aspect=aspect), cam.check_amount(spec.amount), n)
        if spec.mode == "file":
            path = cam.CameraPath.from_realestate10k(spec.text)
            if path.num_frames != n:
                path = path.resampled(n)
            return path.scaled(spec.distance) if spec.distance is not None else path
        raise InputError(f"Unknown camera mode {spec.mode!r}; use preset, keyframes, waypoints or file.")

    # -- captioning -----------------------------------------------------------------------
    def captioner_status(self) -> Availability:
        """Whether the Caption button can work here, and if not, why."""
        from .captioner import select_captioner

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
        from . import metrics as metriclib
        from .postprocess.interpolate import generator_rate_block
        from .runs import Run

        job_id = job_id or self.new_job_id()
        cancel_event = self.jobs.cancel_event(job_id)

        def emit(u: ProgressUpdate) -> None:
            if progress is not None:
                from .eta import with_eta

                progress(u.fraction, with_eta(u.message, u.eta_s))
            if on_progress is not None:
                on_progress(u)
        try:
            generator = self.generator(request.model)
            self._require_available(request.model)
            chain_texts = _normalise_chains(request.chains)
            roles = {**chainlib.DEFAULT_ROLES, **dict(request.roles)}
            stages = self._stages_for(chain_texts, roles)
            params = resolve_params(generator.param_specs(), request.params,
                                    self.registry.get(request.model).defaults)
            image = _check_image(request.image)
            # long shot (core.longshot): frame count from the length; None = the model's own
            length = longshot.plan_length(generator, params, request.seconds, request.output_fps, request.overlap)
            params = longshot.generator_params(generator, params, length)
            path = self.camera_path(request.camera, request.model, length.num_frames if length else None)
            seed = _check_seed(request.seed)
            stage_params = {k: dict(v) for k, v in request.stage_params.items() if k in stages}
            _check_job_size(request.model, generator, params, path, chain_texts, roles, stages, stage_params)
            for name, stage in stages.items():
                # a text-guided stage (Upscale-A-Video) describes the clip with the job's prompt
                if request.prompt and any(p.name == "prompt" for p in stage.param_specs()) \
                        and not stage_params.get(name, {}).get("prompt"):
                    stage_params.setdefault(name, {})["prompt"] = request.prompt

            run = self._reopen_run(request.resume_run, user) if request.resume_run else \
                Run.create(self.runs_root(user), kind="walkthrough", min_free_bytes=self.settings.min_free_bytes,
                             free_space_fn=self.settings.free_space_fn,
                             params={
                                 **({"length": {**length.to_dict(), "save_frames": request.save_frames,
                                                "save_gif": request.save_gif}} if length else {}),
                                 "model": request.model, "generator_params": params, "prompt": request.prompt,
                                 "negative_prompt": request.negative_prompt,
                                 "camera": request.camera.to_dict() if isinstance(request.camera, CameraSpec)
                                 else {"mode": "path", "name": path.name},
                                 "chains": chain_texts, "roles": roles, "stage_params": stage_params,
                                 "device": self.device, "dtype": self.dtype_name, "backend": self.backend,
                             },
                             seeds={"generator": seed})
            timeline, steps_for = self._timeline(request.model, generator, params, path, chain_texts, roles, stages, stage_params,
                                                 request.measure_adherence, emit, cancel_event)
        except StudioError:
            self._forget(job_id)
            raise
        try:
            with run:
                total = timeline.total_estimate()
                yield JobEvent("started", run.id, message=f"run {run.id}" + (
                    f"; this job should take about {_duration(total)} here" if total is not None else ""),
                               eta_s=total)
                if not request.resume_run:  # a resumed run keeps its input file as uploaded
                    run.save_input_image(request.image_bytes if request.image_bytes else image,
                                         original_name=_basename(request.image_name))
                run.write_json("camera", path.to_dict())
                if length is not None:
                    longshot.save_shot_camera(run.dir, path)
                entry = self.registry.get(request.model)
                run.add_model(request.model, kind="generator", label=entry.label, variant=entry.variant,
                              weights=self._weight_hashes(entry))

                has_post = any(c != "none" for c in chain_texts)
                gen_prog = timeline.step(steps_for["generate"])
                t0 = time.perf_counter()
                with self._device_lock:
                    gen_prog(0.0, f"{entry.label}: starting")
                    result = self._with_oom(
                        lambda: generator.generate(GenerateRequest(
                            image, path, request.prompt, request.negative_prompt, seed, params,
                            num_frames=length.num_frames if length else None,
                            segments=SegmentOptions(request.overlap), run_dir=run.dir if length else None), gen_prog),
                        task=f"generating with {entry.label}")
                timeline.finish(steps_for["generate"])
                run.add_timing("generate", time.perf_counter() - t0)
                run.update(generator_info=_jsonable(result.record()))
                clip = result.clip
                zoom = float(result.info.get("zoom") or 1.0)
                if generator.camera_control and zoom != 1.0:
                    # the preview zoomed in to stay inside the photo: a longer lens, same poses
                    path = path.zoomed(zoom)
                    run.write_json("camera", path.to_dict())
                if generator.camera_control and clip.num_frames != path.num_frames and clip.num_frames >= 2:
                    # record the path the clip actually follows (e.g. kenburns resampled it)
                    run.write_json("camera", path.resampled(clip.num_frames).to_dict())
                clip = longshot.to_output_fps(clip, length)  # AI long shots: native frames -> output fps
                if clip.num_frames != result.clip.num_frames:
                    run.write_json("camera", path.resampled(clip.num_frames).to_dict())
                timeline.resize(clip.width, clip.height, clip.num_frames)
                reference = _reference_image(image, result.crop_box)
                native = (clip.width, clip.height)
                measures: dict[str, dict[str, Any]] = {}

                adherence = None
                if request.measure_adherence:
                    adherence = self._adherence(run, clip, path, timeline.step(steps_for["adherence"]))

                def record(name: str, out: Clip, stages_info: list[dict[str, Any]]) -> JobEvent:
                    write_step = steps_for["write " + name]
                    wp = timeline.step(write_step)  # checks the cancel flag at every report
                    wp(0.0, f"{name}: writing the video")
                    t_write = time.perf_counter()
                    run.add_chain(name, stages=stages_info)
                    # x264's "veryfast" encodes a 2048x1280 clip ~3x faster than "medium" at the same crf
                    fast = {"preset": "veryfast"} if out.width * out.height > 1_000_000 else {}
                    # Metrics (mostly single-threaded NumPy) run beside the encoders (ffmpeg, zlib):
                    # on 2 cores the two overlap instead of taking turns.
                    measuring = _Background(lambda: metriclib.measure(out, reference_image=reference,
                                                                      common_size=native, study=True))
                    try:
                        video = run.write_chain_video(name, out, progress=Progress(
                            lambda f, m: wp(0.6 * f, f"{name}: {m}"), cancel_event), **fast)
                        frames_dir = run.write_chain_video(name, out, "png") if request.save_frames else None
                        if request.save_gif:
                            run.write_chain_video(name, out, "gif")
                        wp(0.6, f"{name}: measuring temporal consistency")
                    finally:
                        m = measuring.result()
                    # temporal metrics at the generator's frame rate too (interpolation changes it)
                    m["generator_rate"] = generator_rate_block(out, clip.fps, clip.num_frames, m, metriclib.measure,
                                                               common_size=native, study=True)
                    if adherence is not None:  # post-processing keeps the camera: one score for all
                        m["adherence"] = adherence
                    run.add_chain(name, metrics=m)
                    measures[name] = m
                    run.update(metrics={name: m})
                    run.add_timing(f"write {name}", time.perf_counter() - t_write)
                    timeline.finish(write_step)
                    return JobEvent("chain" if name != "none" else "generated", run.id, name, video, frames_dir, m)

                if "none" in chain_texts or not has_post:
                    yield record("none", clip, [])
                post = [c for c in chain_texts if c != "none"]
                if post:
                    post_prog = timeline.step(steps_for["post"])
                    pending: list[JobEvent] = []
                    t1 = time.perf_counter()

                    def on_result(res: chainlib.ChainResult) -> None:
                        pending.append(record(res.name, res.clip, [r.to_dict() for r in res.records]))

                    # Chains run inside the device lock; their events are yielded as each finishes.
                    for ev in self._run_chains_iter(clip, post, roles, stage_params, stages, post_prog, on_result,
                                                    pending, lambda k, prefix: timeline.step(steps_for[prefix])):
                        yield ev
                    run.add_timing("post_process", time.perf_counter() - t1)
                table = metriclib.summary_table(measures)
                run.write_json("metrics", {"chains": measures, "table": table, "seams": result.info.get("seams"),
                                           "table_common": metriclib.summary_table(measures, variant="common"),
                                           "table_study": metriclib.summary_table(measures, variant="study"),
                                           "table_generator_rate": metriclib.summary_table(
                                               {k: m["generator_rate"] for k, m in measures.items()},
                                               variant="common")})
                timeline.finish(len(timeline.steps) - 1)
                emit(ProgressUpdate(1.0, "done", None, 0.0))
                run.finish()
                yield JobEvent("done", run.id, table=table, message="done")
        finally:
            # Stops a chain worker still running when the consumer went away mid-job.
            cancel_event.set()
            self._forget(job_id)

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

    def _adherence(self, run, clip: Clip, path: cam.CameraPath, prog: Progress) -> dict[str, Any]:
        """Camera adherence of the generated clip (CPU; outside the device lock). The full result
        (per-frame errors, both trajectories) goes to run.json; the summary is returned."""
        from .adherence import measure_adherence

        t0 = time.perf_counter()
        full = measure_adherence(clip, path, progress=prog)
        run.add_timing("adherence", time.perf_counter() - t0)
        run.update(adherence=_jsonable(full))
        keys = ("available", "estimator", "RotErr", "RotErr_deg", "TransErr", "CamMC", "reason")
        return {k: full[k] for k in keys if k in full}

    def _run_chains_iter(self, clip, post, roles, stage_params, stages, prog, on_result, pending,
                         stage_progress=None):
        """Run the chains in a worker thread so each finished chain can be yielded at once."""
        done = threading.Event()
        error: list[BaseException] = []

        def work():
            try:
                with self._device_lock:
                    self._with_oom(lambda: chainlib.run_chains(
                        clip, post, stage_params, prog, roles=roles, stages_by_name=stages, on_result=on_result,
                        stage_progress=stage_progress),
                        task="post-processing")
            except BaseException as exc:  # re-raised in the caller's thread
                error.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=work, name="studio-chains", daemon=True)
        t.start()
        while True:
            finished = done.wait(0.05)
            while pending:
                yield pending.pop(0)
            if finished:
                break
        t.join()
        if error:
            raise error[0]

    def _stages_for(self, chain_texts: Sequence[str], roles: Mapping[str, str]) -> dict[str, Stage]:
        """Stage instances for every stage the chains use, with availability checked up front."""
        for role, name in roles.items():
            if role not in ROLE_KIND:
                raise InputError(f"Unknown post-processing role {role!r}; use {', '.join(ROLE_KIND)}.")
            if name not in self.registry and not any(role in c.split("+") for c in chain_texts):
                continue  # a default role (e.g. interpolate) this registry lacks and no chain uses
            entry = self.registry.get(name)
            if entry.kind != ROLE_KIND[role]:
                raise InputError(f"{entry.label} cannot {role}: it is a {entry.kind}.")
        names: list[str] = []
        known = tuple(e.name for e in self.registry if e.kind in STAGE_KINDS)
        for c in chain_texts:
            if c == "none":
                continue
            for s in chainlib.parse_chain(c, roles, extra=known):
                if s not in names:
                    names.append(s)
        stages = {}
        for n in names:
            self._require_available(n)
            stages[n] = self.stage(n)
        return stages

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

    def _weight_hashes(self, entry: ModelEntry) -> dict[str, str]:
        """sha256 of each weight file: from models.json when given, else computed once and cached."""
        out = {}
        for f in entry.files:
            p = f.resolve(self.registry.root)
            if f.sha256:
                out[f.path] = f.sha256
            elif p.is_file():
                out[f.path] = _cached_sha256(p)
        return out

    def _forget(self, job_id: str) -> None:
        self.jobs.release(job_id)

    def _timeline(self, model: str, generator: Generator, params: Mapping[str, Any], path: cam.CameraPath,
                  chain_texts: Sequence[str], roles: Mapping[str, str], stages: Mapping[str, Stage],
                  stage_params: Mapping[str, Mapping[str, Any]], adherence: bool,
                  emit: Callable[[ProgressUpdate], None], cancel_event: threading.Event):
        """The job's steps in run order, sized from the generator's declared output (resized to
        the real clip after generation), and a map from step names to their index: "generate",
        "adherence", "post" (chain set-up), a stage run's prefix tuple, "write <chain>"."""
        from .eta import Step, Timeline, megapixel_frames

        post = [c for c in chain_texts if c != "none"]
        plans = chainlib.plan_chains(post, roles, stages_by_name=stages) if post else []
        resolved = {n: resolve_params(st.param_specs(), stage_params.get(n)) for n, st in stages.items()}
        index: dict[Any, int] = {}
        steps: list[Step] = []

        def add(name: Any, step: Step) -> None:
            index[name] = len(steps)
            steps.append(step)

        add("generate", Step(f"generate:{model}", "generate", 1.0))
        if adherence:
            add("adherence", Step("adherence", "camera adherence"))
        if "none" in chain_texts or not post:
            add("write none", Step("write", "none: writing"))
        if post:
            add("post", Step("setup", "post-processing", 0.0))
        for k, plan in enumerate(plans):
            for prefix in plan.runs:
                add(prefix, Step(f"stage:{prefix[-1]}", f"chain {k + 1} of {len(plans)} ({plan.names[0]}): {prefix[-1]}"))
            for name in plan.names:
                add("write " + name, Step("write", f"{name}: writing"))

        def resize(width: int, height: int, frames: int) -> None:
            sizes: dict[tuple[str, ...], tuple[int, int]] = {(): (width, height)}
            for plan in plans:
                for i in range(len(plan.stages)):
                    pre = plan.stages[: i + 1]
                    if pre not in sizes:
                        sizes[pre] = stages[pre[-1]].output_size(*sizes[pre[:-1]], resolved[pre[-1]])
                    if pre in index:
                        a, b = sizes[pre[:-1]], sizes[pre]
                        steps[index[pre]].units = megapixel_frames(max(a[0] * a[1], b[0] * b[1]), 1, frames)
                for name in plan.names:
                    steps[index["write " + name]].units = megapixel_frames(*sizes[plan.stages], frames)
            if "write none" in index:
                steps[index["write none"]].units = megapixel_frames(width, height, frames)
            if "adherence" in index:
                steps[index["adherence"]].units = megapixel_frames(width, height, frames)

        w = int(params.get("width") or generator.width or 512)
        h = int(params.get("height") or generator.height or 320)
        n = int(params.get("num_frames") or path.num_frames or generator.num_frames or 16)
        resize(w, h, n)
        timeline = Timeline(steps, self.rates, emit, cancel_event)
        timeline.resize = resize  # type: ignore[attr-defined]  # sizes are known after generation
        return timeline, index

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


# --------------------------------------------------------------------------------- helpers

def _leading_part(path: cam.CameraPath, amount: float, num_frames: int) -> cam.CameraPath:
    """The first `amount` (0..1] of a densely sampled path, resampled to `num_frames` frames."""
    k = max(1, int(round(amount * (path.num_frames - 1))))
    part = cam.CameraPath(path.w2c[:k + 1].copy(), path.intrinsics[:k + 1].copy(), path.name)
    return part.resampled(num_frames)


def _pick_device(device: str) -> str:
    if device in ("", "auto"):
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # pragma: no cover
            return "cpu"
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise Unavailable(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu.")
        return device
    raise InputError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")


def offered_backends(device: str) -> tuple[str, ...]:
    """The backends worth offering: OpenVINO only on machines without CUDA (it runs on the CPU)."""
    return ("torch",) if device.startswith("cuda") else ("torch", "openvino", "openvino-int8")


def backend_hint(device: str, backend: str) -> str | None:
    """One line suggesting the OpenVINO backend on a machine without CUDA where it is installed."""
    if backend == "torch" and "openvino" in offered_backends(device) and importlib.util.find_spec("openvino"):
        return "no CUDA GPU: --backend openvino (or openvino-int8) runs CamI2V and SVD faster on this CPU."
    return None


def _pick_backend(backend: str, device: str) -> str:
    """A valid backend for `device`; OpenVINO must be installed (one clear line otherwise)."""
    backend = backend or "torch"
    if backend == "torch":
        return backend
    if backend not in ("openvino", "openvino-int8"):
        raise InputError(f"Unknown backend {backend!r}; use torch, openvino or openvino-int8.")
    if device.startswith("cuda"):
        raise InputError(f"--backend {backend} runs on the CPU; use --device cpu with it (or --backend torch).")
    from .models.openvino_backend import require_openvino

    require_openvino()
    return backend


def _pick_dtype(dtype: str, device: str) -> str:
    if dtype in ("", "auto"):
        return "bf16" if device.startswith("cuda") else "fp32"
    if dtype not in ("fp32", "bf16", "fp16"):
        raise InputError(f"Unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16.")
    return dtype


def _normalise_chains(chains: Sequence[str]) -> list[str]:
    out: list[str] = []
    for c in chains:
        for part in str(c).split(","):
            name = "+".join(w.strip().lower() for w in part.split("+") if w.strip())
            if name and name not in out:
                out.append(name)
    if not out:
        raise InputError("Pick at least one chain (none, denoise, upscale, denoise+upscale, upscale+denoise).")
    if len(out) > 12:
        raise InputError(f"At most 12 chains per run, got {len(out)}.")
    return out


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError("The photo must be an RGB image; load it with Studio.load_image first.")
    if min(image.shape[:2]) < 16:
        raise InputError(f"The photo is too small ({image.shape[1]}x{image.shape[0]}); use at least 16 pixels a side.")
    h, w = image.shape[:2]
    if max(w, h) > MAX_ASPECT * min(w, h):
        # Covering a video frame with such a strip would blow it up to gigabytes.
        raise InputError(f"The photo is {w}x{h}, more than {MAX_ASPECT}:1; crop it to a less extreme shape.")
    return image


def _check_builtin_defaults(reg: Registry) -> None:
    """ConfigError naming the entry when the defaults of a weight-free entry (kenburns,
    nlmeans, lanczos: cheap to build) are out of range, e.g. a width of 99999."""
    for e in reg:
        if e.variant not in ("kenburns", "nlmeans", "lanczos") or not e.defaults:
            continue
        if e.variant == "kenburns":
            from .generators.kenburns import KenBurnsGenerator

            specs = KenBurnsGenerator().param_specs()
        else:
            specs = chainlib.create_stage(e.variant).param_specs()
        _check_defaults(reg, e, specs)


def _check_defaults(reg: Registry, e: ModelEntry, specs: Sequence[ParamSpec]) -> None:
    """ConfigError naming the entry when its models.json defaults do not fit its parameters."""
    try:
        resolve_params(specs, None, e.defaults)
    except StudioError as exc:
        raise ConfigError(f"{reg.source}: entry {e.name!r}, field 'defaults': {exc}") from None


def _check_job_size(model: str, generator: Generator, params: Mapping[str, Any], path: cam.CameraPath,
                    chain_texts: Sequence[str], roles: Mapping[str, str], stages: Mapping[str, Stage],
                    stage_params: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse, before anything runs, a job whose generated clip or any chain's output would not
    fit in memory (sizes from the generator's parameters and each stage's scale factor)."""
    w = int(params.get("width") or generator.width)
    h = int(params.get("height") or generator.height)
    n = int(params.get("num_frames") or (path.num_frames if generator.camera_control else generator.num_frames))
    limits.check_clip_size(w, h, n, f"The clip of {model}")
    chains = []
    for text in chain_texts:
        names = chainlib.parse_chain(text, roles, extra=tuple(stages)) if text != "none" else ()
        picked = [stages[s] for s in names]
        chains.append((text, picked, [resolve_params(st.param_specs(), stage_params.get(st.name)) for st in picked]))
    limits.check_chain_outputs(w, h, n, chains, fps=float(params.get("fps") or generator.fps))


def _check_seed(seed: Any) -> int:
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"Seed must be a whole number, got {seed!r}.") from None
    if not 0 <= s < 2**32:
        raise InputError(f"Seed must be between 0 and {2**32 - 1}, got {s}.")
    return s


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


def _basename(name: str | None) -> str | None:
    """Only the last path component of an uploaded file's name, kept as data (never a path)."""
    if not name:
        return None
    return Path(str(name).replace("\\", "/")).name[:200] or None


def _reference_image(image: np.ndarray, crop_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """The photo region the clip shows (the generator's typed crop box, photo pixels), for fidelity."""
    if crop_box is not None:
        x0, y0, x1, y1 = crop_box
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            return np.ascontiguousarray(image[y0:y1, x0:x1])
    return image


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


_SHA_CACHE: dict[tuple[str, int, float], str] = {}


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]
