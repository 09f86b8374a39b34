"""A walkthrough request parsed and checked once (`plan`), before anything runs: the generator,
the photo, the chains and their stages, resolved parameters, the camera path, the job's size
against the memory limits, and the timeline of its steps for progress and time-left estimates.
A request that fails here leaves no run folder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from . import camera as cam
from . import limits
from . import longshot
from .contracts import JobRequest, check_seed, normalise_chains
from .errors import InputError
from .generators.base import Generator
from .jobs import ProgressUpdate
from .params import resolve_params
from .photo import check_photo
from .postprocess import chains as chainlib
from .postprocess.base import Stage
from .postprocess.chains import ParsedChain

if TYPE_CHECKING:  # pragma: no cover
    from .service import Studio


@dataclass
class JobPlan:
    """A request parsed and checked once: everything the steps below need, typed."""

    request: JobRequest
    generator: Generator
    image: np.ndarray  # (H, W, 3) uint8, passed core.photo.check_photo
    parsed: list[ParsedChain]  # each requested chain, its normalised text and stage names, parsed once
    roles: dict[str, str]
    stages: dict[str, Stage]
    params: dict[str, Any]  # generator parameters, resolved against its ParamSpecs
    stage_params: dict[str, dict[str, Any]]
    length: Any  # core.longshot.LengthPlan, or None for the generator's own length
    path: cam.CameraPath
    seed: int

    @property
    def chains(self) -> list[str]:
        """The normalised chain texts ("none", "denoise+upscale", ...)."""
        return [c.name for c in self.parsed]

    @property
    def post(self) -> list[ParsedChain]:
        return [c for c in self.parsed if c.name != "none"]

    @property
    def writes_generated(self) -> bool:
        """The generator's own clip is written as chain "none" (asked for, or nothing else is)."""
        return "none" in self.chains or not self.post


def plan(studio: "Studio", request: JobRequest) -> JobPlan:
    """Parse and check `request` (StudioError naming the problem); nothing is written."""
    chain_texts = normalise_chains(request.chains)
    roles = {**chainlib.DEFAULT_ROLES, **dict(request.roles)}
    parsed = resolve_chains(studio, chain_texts, roles)
    if request.commercial_only:  # refused before anything loads, with the licence's reason
        studio.check_commercial(request.model, parsed, roles)
    generator = studio.generator(request.model)
    studio._require_available(request.model)
    stages = studio._stages_for(parsed, roles)
    params = resolve_params(generator.param_specs(), request.params, studio.registry.get(request.model).defaults)
    image = check_photo(request.image)
    # long shot (core.longshot): frame count from the length; None = the model's own
    length = longshot.plan_length(generator, params, request.seconds, request.output_fps, request.overlap)
    params = longshot.generator_params(generator, params, length)
    path = studio.camera_path(request.camera, request.model, length.num_frames if length else None)
    seed = check_seed(request.seed)
    stage_params = {k: dict(v) for k, v in request.stage_params.items() if k in stages}
    check_job_size(request.model, generator, params, path, parsed, stages, stage_params)
    for name, stage in stages.items():
        # a text-guided stage (Upscale-A-Video) describes the clip with the job's prompt
        if request.prompt and any(p.name == "prompt" for p in stage.param_specs()) \
                and not stage_params.get(name, {}).get("prompt"):
            stage_params.setdefault(name, {})["prompt"] = request.prompt
    return JobPlan(request, generator, image, parsed, roles, stages, params, stage_params, length, path, seed)


def resolve_chains(studio: "Studio", chain_texts: Sequence[str], roles: Mapping[str, str]) -> list[ParsedChain]:
    """Each chain text parsed once into its stage names (role words through `roles`, checked
    against the registry's entries); the layers below take these and never parse the text again."""
    from .catalogue import ROLE_KIND, STAGE_KINDS

    for role, name in roles.items():
        if role not in ROLE_KIND:
            raise InputError(f"Unknown post-processing role {role!r}; use {', '.join(ROLE_KIND)}.")
        if name not in studio.registry and not any(role in chainlib.chain_words(c) for c in chain_texts):
            continue  # a default role (e.g. interpolate) this registry lacks and no chain uses
        entry = studio.registry.get(name)
        if entry.kind != ROLE_KIND[role]:
            raise InputError(f"{entry.label} cannot {role}: it is a {entry.kind}.")
    known = tuple(e.name for e in studio.registry if e.kind in STAGE_KINDS)
    return [chainlib.resolve_chain(c, roles, extra=known) for c in chain_texts]


def stages_for(studio: "Studio", chains: Sequence[str | ParsedChain], roles: Mapping[str, str]) -> dict[str, Stage]:
    """Stage instances for every stage the chains use (texts are parsed with `resolve_chains`
    first), with availability checked up front."""
    parsed = [c for c in chains if isinstance(c, ParsedChain)]
    texts = [c for c in chains if not isinstance(c, ParsedChain)]
    if texts or not parsed:  # parsed chains had their roles checked when they were parsed
        parsed += resolve_chains(studio, texts, roles)
    names = list(dict.fromkeys(s for c in parsed for s in c.stages))
    stages = {}
    for n in names:
        studio._require_available(n)
        stages[n] = studio.stage(n)
    return stages


def check_job_size(model: str, generator: Generator, params: Mapping[str, Any], path: cam.CameraPath,
                   chains: Sequence[ParsedChain], stages: Mapping[str, Stage],
                   stage_params: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse, before anything runs, a job whose generated clip or any chain's output would not
    fit in memory (sizes from the generator's parameters and each stage's scale factor)."""
    w = int(params.get("width") or generator.width)
    h = int(params.get("height") or generator.height)
    n = int(params.get("num_frames") or (path.num_frames if generator.camera_control else generator.num_frames))
    limits.check_clip_size(w, h, n, f"The clip of {model}")
    outputs = []
    for chain in chains:
        picked = [stages[s] for s in chain.stages]
        outputs.append((chain.name, picked,
                        [resolve_params(st.param_specs(), stage_params.get(st.name)) for st in picked]))
    limits.check_chain_outputs(w, h, n, outputs, fps=float(params.get("fps") or generator.fps))


def make_timeline(studio: "Studio", p: JobPlan, emit: Callable[[ProgressUpdate], None],
                  cancel_event: threading.Event):
    """The job's steps in run order, sized from the generator's declared output (resized to
    the real clip after generation), and a map from step names to their index: "generate",
    "adherence", "post" (chain set-up), a stage run's prefix tuple, "write <chain>"."""
    from .eta import Step, Timeline, megapixel_frames

    stages, post = p.stages, p.post
    plans = chainlib.plan_chains(post, stages_by_name=stages) if post else []  # parsed: roles applied
    resolved = {n: resolve_params(st.param_specs(), p.stage_params.get(n)) for n, st in stages.items()}
    index: dict[Any, int] = {}
    steps: list[Step] = []

    def add(name: Any, step: Step) -> None:
        index[name] = len(steps)
        steps.append(step)

    add("generate", Step(f"generate:{p.request.model}", "generate", 1.0))
    if p.request.measure_adherence:
        add("adherence", Step("adherence", "camera adherence"))
    if p.writes_generated:
        add("write none", Step("write", "none: writing"))
    if post:
        add("post", Step("setup", "post-processing", 0.0))
    for k, chain_plan in enumerate(plans):
        for prefix in chain_plan.runs:
            add(prefix, Step(f"stage:{prefix[-1]}",
                             f"chain {k + 1} of {len(plans)} ({chain_plan.names[0]}): {prefix[-1]}"))
        for name in chain_plan.names:
            add("write " + name, Step("write", f"{name}: writing"))

    def resize(width: int, height: int, frames: int) -> None:
        sizes: dict[tuple[str, ...], tuple[int, int]] = {(): (width, height)}
        for chain_plan in plans:
            for i in range(len(chain_plan.stages)):
                pre = chain_plan.stages[: i + 1]
                if pre not in sizes:
                    sizes[pre] = stages[pre[-1]].output_size(*sizes[pre[:-1]], resolved[pre[-1]])
                if pre in index:
                    a, b = sizes[pre[:-1]], sizes[pre]
                    steps[index[pre]].units = megapixel_frames(max(a[0] * a[1], b[0] * b[1]), 1, frames)
            for name in chain_plan.names:
                steps[index["write " + name]].units = megapixel_frames(*sizes[chain_plan.stages], frames)
        if "write none" in index:
            steps[index["write none"]].units = megapixel_frames(width, height, frames)
        if "adherence" in index:
            steps[index["adherence"]].units = megapixel_frames(width, height, frames)

    generator, params = p.generator, p.params
    w = int(params.get("width") or generator.width or 512)
    h = int(params.get("height") or generator.height or 320)
    n = int(params.get("num_frames") or p.path.num_frames or generator.num_frames or 16)
    resize(w, h, n)
    timeline = Timeline(steps, studio.rates, emit, cancel_event)
    timeline.resize = resize  # type: ignore[attr-defined]  # sizes are known after generation
    return timeline, index
