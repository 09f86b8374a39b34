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

import hashlib
import importlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import camera as cam
from .clip import Clip
from .errors import ConfigError, InputError, StudioError, Unavailable
from .generators.base import GenerateRequest, Generator
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
}

ROLE_KIND = {"denoise": "denoiser", "upscale": "upscaler"}

# Variants whose weights the model manager holds: variant -> (what, module, class). Each module
# provides `load_model(registry, entry, *, device, dtype)`, and the class `from_entry(entry,
# load_model)` where `load_model()` returns the resident model.
MANAGED_VARIANTS: dict[str, tuple[str, str, str]] = {
    "cami2v": ("generator", "core.generators.cami2v", "CamI2VGenerator"),
    "svd": ("generator", "core.generators.svd", "SVDGenerator"),
    "fastdvdnet": ("stage", "core.postprocess.fastdvdnet", "FastDVDnetStage"),
    "upscale-a-video": ("stage", "core.postprocess.upscale_a_video", "UpscaleAVideoStage"),
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
    preload: tuple[str, ...] = ()
    max_image_bytes: int = 50 * 1024**2
    max_megapixels: float = 40.0
    memory_budget_bytes: int | None = None  # None: taken from the device
    min_free_bytes: int = 256 * 1024**2
    # free_space_fn(path) -> free bytes, in place of shutil.disk_usage (tests simulate a full disk)
    free_space_fn: Callable[[Path], int] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.models = self._abs(self.models or "models.json")
        self.outputs = self._abs(self.outputs or "outputs")

    def _abs(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.root / p


# --------------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class CameraSpec:
    """How the user described the camera move; `Studio.camera_path` turns it into a CameraPath.

    mode "preset": `preset`, `amount`, `distance`, `easing`.
    mode "keyframes": `keyframes` (list of dicts: time, position [x, y, z], yaw, pitch, roll).
    mode "waypoints": `waypoints` (list of normalised (x, y) clicks on the photo), `depth`.
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
            d.update(waypoints=[list(p) for p in self.waypoints], depth=self.depth)
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


@dataclass
class JobEvent:
    """Something the job finished. kind: "started" | "generated" | "chain" | "done".

    For "generated" and "chain": `chain` is the chain name ("none" for the raw generator output),
    `video` its mp4, `metrics` its `core.metrics.measure` result. "done" carries the summary
    table rows of every chain.
    """

    kind: str
    run_id: str
    chain: str | None = None
    video: Path | None = None
    frames_dir: Path | None = None
    metrics: dict[str, Any] | None = None
    table: list[dict[str, Any]] | None = None
    message: str = ""


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
        self._manager = manager
        self._device_lock = threading.RLock()  # one job on the device at a time (UI, API and CLI)
        self._generators: dict[str, Generator] = {}
        self._stages: dict[str, Stage] = {}
        self._jobs: dict[str, threading.Event] = {}
        self._jobs_lock = threading.Lock()
        self._captioner_cache = None

    # -- set-up ---------------------------------------------------------------------------
    def _load_registry(self) -> Registry:
        path = self.settings.models
        builtin = Registry.from_dict({"models": BUILTIN_MODELS}, root=self.settings.root, source="built-in")
        try:
            reg = Registry.load(path, root=self.settings.root)
        except ConfigError as exc:
            self._messages.append(f"{exc} Only the built-in models (no weights needed) are offered.")
            return builtin
        missing = [e for e in builtin if e.name not in reg]
        return Registry(list(reg) + missing, root=reg.root, source=reg.source) if missing else reg

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
                    extra = dict(is_ai=g.is_ai, camera_control=g.camera_control, width=g.width, height=g.height,
                                 num_frames=g.num_frames, fps=g.fps, params=tuple(g.param_specs()))
                elif e.kind in ("denoiser", "upscaler"):
                    s = self._construct_stage(e)
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
        if entry.kind not in ("denoiser", "upscaler"):
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
        if entry.variant in ("nlmeans", "lanczos"):
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

        return load_image(source, max_megapixels=self.settings.max_megapixels,
                          max_bytes=self.settings.max_image_bytes)

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
            kfs = [cam.Keyframe.from_dict(k) for k in spec.keyframes]
            return cam.keyframe_path(kfs, num_frames=n, aspect=aspect)
        if spec.mode == "waypoints":
            return cam.waypoint_path(spec.waypoints, num_frames=n, depth=spec.depth, aspect=aspect)
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
        job = uuid.uuid4().hex[:12]
        with self._jobs_lock:
            self._jobs[job] = threading.Event()
        return job

    def cancel(self, job_id: str) -> bool:
        """Ask a running job to stop at its next step; True if the job was known."""
        with self._jobs_lock:
            ev = self._jobs.get(job_id)
        if ev is None:
            return False
        ev.set()
        return True

    def run_job(self, request: JobRequest, progress: ProgressFn | None = None,
                job_id: str | None = None) -> Iterator[JobEvent]:
        """Generate and post-process one walkthrough, yielding an event after each product.

        Progress: generation takes the first half (or all of it for a job without chains),
        post-processing the rest. The job stops between steps when `cancel(job_id)` is called.
        """
        from . import metrics as metriclib
        from .runs import Run

        job_id = job_id or self.new_job_id()
        with self._jobs_lock:
            cancel_event = self._jobs.setdefault(job_id, threading.Event())
        prog = Progress(progress, cancel_event)
        try:
            generator = self.generator(request.model)
            self._require_available(request.model)
            chain_texts = _normalise_chains(request.chains)
            roles = {**chainlib.DEFAULT_ROLES, **dict(request.roles)}
            stages = self._stages_for(chain_texts, roles)
            params = resolve_params(generator.param_specs(), request.params,
                                    self.registry.get(request.model).defaults)
            image = _check_image(request.image)
            path = self.camera_path(request.camera, request.model)
            seed = _check_seed(request.seed)
            stage_params = {k: dict(v) for k, v in request.stage_params.items() if k in stages}
            for name, stage in stages.items():
                # a text-guided stage (Upscale-A-Video) describes the clip with the job's prompt
                if request.prompt and any(p.name == "prompt" for p in stage.param_specs()) \
                        and not stage_params.get(name, {}).get("prompt"):
                    stage_params.setdefault(name, {})["prompt"] = request.prompt

            run = Run.create(self.settings.outputs, kind="walkthrough", min_free_bytes=self.settings.min_free_bytes,
                             free_space_fn=self.settings.free_space_fn,
                             params={
                                 "model": request.model, "generator_params": params, "prompt": request.prompt,
                                 "negative_prompt": request.negative_prompt,
                                 "camera": request.camera.to_dict() if isinstance(request.camera, CameraSpec)
                                 else {"mode": "path", "name": path.name},
                                 "chains": chain_texts, "roles": roles, "stage_params": stage_params,
                                 "device": self.device, "dtype": self.dtype_name,
                             },
                             seeds={"generator": seed})
        except StudioError:
            self._forget(job_id)
            raise
        try:
            with run:
                yield JobEvent("started", run.id, message=f"run {run.id}")
                run.save_input_image(request.image_bytes if request.image_bytes else image,
                                     original_name=_basename(request.image_name))
                run.write_json("camera", path.to_dict())
                entry = self.registry.get(request.model)
                run.add_model(request.model, kind="generator", label=entry.label, variant=entry.variant,
                              weights=self._weight_hashes(entry))

                has_post = any(c != "none" for c in chain_texts)
                gen_end = 0.45 if has_post else 0.85
                gen_prog = prog.sub(0.0, gen_end if request.measure_adherence else gen_end + 0.05)
                t0 = time.perf_counter()
                with self._device_lock:
                    gen_prog(0.0, f"{entry.label}: starting")
                    result = self._with_oom(
                        lambda: generator.generate(GenerateRequest(image, path, request.prompt, request.negative_prompt,
                                                                   seed, params), gen_prog),
                        task=f"generating with {entry.label}")
                run.add_timing("generate", time.perf_counter() - t0)
                run.update(generator_info=_jsonable(result.record()))
                clip = result.clip
                if generator.camera_control and clip.num_frames != path.num_frames and clip.num_frames >= 2:
                    # record the path the clip actually follows (e.g. kenburns resampled it)
                    run.write_json("camera", path.resampled(clip.num_frames).to_dict())
                reference = _reference_image(image, result.crop_box)
                native = (clip.width, clip.height)
                measures: dict[str, dict[str, Any]] = {}

                adherence = None
                if request.measure_adherence:
                    adherence = self._adherence(run, clip, path, prog.sub(gen_end, gen_end + 0.05))

                def record(name: str, out: Clip, stages_info: list[dict[str, Any]]) -> JobEvent:
                    run.add_chain(name, stages=stages_info)
                    video = run.write_chain_video(name, out)
                    frames_dir = run.write_chain_video(name, out, "png") if request.save_frames else None
                    if request.save_gif:
                        run.write_chain_video(name, out, "gif")
                    m = metriclib.measure(out, reference_image=reference, common_size=native, study=True)
                    if adherence is not None:  # post-processing keeps the camera: one score for all
                        m["adherence"] = adherence
                    run.add_chain(name, metrics=m)
                    measures[name] = m
                    run.update(metrics={name: m})
                    return JobEvent("chain" if name != "none" else "generated", run.id, name, video, frames_dir, m)

                if "none" in chain_texts or not has_post:
                    yield record("none", clip, [])
                post = [c for c in chain_texts if c != "none"]
                if post:
                    post_prog = prog.sub(0.5, 0.97)
                    pending: list[JobEvent] = []
                    t1 = time.perf_counter()

                    def on_result(res: chainlib.ChainResult) -> None:
                        pending.append(record(res.name, res.clip, [r.to_dict() for r in res.records]))

                    # Chains run inside the device lock; their events are yielded as each finishes.
                    for ev in self._run_chains_iter(clip, post, roles, stage_params, stages, post_prog, on_result,
                                                    pending):
                        yield ev
                    run.add_timing("post_process", time.perf_counter() - t1)
                table = metriclib.summary_table(measures)
                run.write_json("metrics", {"chains": measures, "table": table,
                                           "table_common": metriclib.summary_table(measures, variant="common"),
                                           "table_study": metriclib.summary_table(measures, variant="study")})
                prog(1.0, "done")
                run.finish()
                yield JobEvent("done", run.id, table=table, message="done")
        finally:
            # Stops a chain worker still running when the consumer went away mid-job.
            cancel_event.set()
            self._forget(job_id)

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

    def _run_chains_iter(self, clip, post, roles, stage_params, stages, prog, on_result, pending):
        """Run the chains in a worker thread so each finished chain can be yielded at once."""
        done = threading.Event()
        error: list[BaseException] = []

        def work():
            try:
                with self._device_lock:
                    self._with_oom(lambda: chainlib.run_chains(
                        clip, post, stage_params, prog, roles=roles, stages_by_name=stages, on_result=on_result),
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
                raise InputError(f"Unknown post-processing role {role!r}; use denoise or upscale.")
            entry = self.registry.get(name)
            if entry.kind != ROLE_KIND[role]:
                raise InputError(f"{entry.label} cannot {role}: it is a {entry.kind}.")
        names: list[str] = []
        known = tuple(e.name for e in self.registry if e.kind in ("denoiser", "upscaler"))
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
        with self._jobs_lock:
            self._jobs.pop(job_id, None)

    # -- history --------------------------------------------------------------------------
    def list_runs(self, limit: int | None = 50):
        from .runs import list_runs

        return list_runs(self.settings.outputs, limit=limit)

    def open_run(self, run_id: str):
        from .runs import Run

        return Run.open(self.settings.outputs, run_id)


# --------------------------------------------------------------------------------- helpers

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


def _check_seed(seed: Any) -> int:
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"Seed must be a whole number, got {seed!r}.") from None
    if not 0 <= s < 2**32:
        raise InputError(f"Seed must be between 0 and {2**32 - 1}, got {s}.")
    return s


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
