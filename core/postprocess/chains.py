"""Chains of post-processing stages and the stage registry.

A chain is an ordered tuple of registered stage names; ``()`` is the generator output itself.
Users write chains as text: role words ("denoise", "upscale", "interpolate") resolve to the stage
picked for that role, stage names ("fastdvdnet", "lanczos") are used as they are, joined by "+":
``"denoise+upscale"``, ``"upscale+denoise"``, ``"fastdvdnet+lanczos"``, ``"none"``.

Registry: `STAGES` maps a stage name to a zero-argument constructor (usually the class). Other
modules add theirs with `register_stage("fastdvdnet", FastDVDnetDenoise)`; nothing registers
itself at import time, so the registry holds exactly what the caller registered (the two OpenCV
stages are present from the start). A service that keeps models resident passes its own stage
instances to `run_chain` / `run_chains` through `stages_by_name` instead of having them rebuilt.

`run_chains` runs several chains on one clip and computes every shared prefix once: for the
standard set, "denoise" is computed once for "denoise" and "denoise+upscale", and "upscale" once
for "upscale" and "upscale+denoise" (4 stage runs instead of 6).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

from ..clip import Clip
from ..errors import InputError
from ..limits import check_chain_length, check_chain_outputs
from ..params import resolve_params
from ..progress import Progress, ProgressFn, as_progress
from .base import Stage
from .classical import LanczosUpscale, NLMeansDenoise
from .interpolate import InterpolateStage

StageFactory = Callable[[], Stage]

ROLES = ("denoise", "upscale", "interpolate")
DEFAULT_ROLES: dict[str, str] = {"denoise": "nlmeans", "upscale": "lanczos", "interpolate": "dis-interp"}
STANDARD_CHAINS: tuple[str, ...] = ("none", "denoise", "upscale", "denoise+upscale", "upscale+denoise")

STAGES: dict[str, StageFactory] = {
    NLMeansDenoise.name: NLMeansDenoise,
    LanczosUpscale.name: LanczosUpscale,
    InterpolateStage.name: InterpolateStage,  # frame interpolation (role "interpolate")
}


def register_stage(name: str, factory: StageFactory, *, replace: bool = False) -> None:
    """Add a stage constructor under `name` (lower case letters, digits, '-' and '_')."""
    if not name or name != name.lower() or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"stage names are lower-case words with '-' or '_', got {name!r}")
    if name in ROLES or name == "none":
        raise ValueError(f"{name!r} is reserved for chain syntax")
    if name in STAGES and not replace:
        raise ValueError(f"stage {name!r} is already registered")
    STAGES[name] = factory


def create_stage(name: str) -> Stage:
    """Construct a registered stage; InputError naming the unknown name otherwise."""
    if name not in STAGES:
        raise InputError(f"Unknown post-processing stage {name!r}; available: {', '.join(sorted(STAGES))}.")
    stage = STAGES[name]()
    if stage.role not in ROLES:
        raise InputError(f"Stage {name!r} declares role {stage.role!r}; expected one of {', '.join(ROLES)}.")
    return stage


def chain_words(text: str) -> list[str]:
    """The words of chain text, lower case, without spaces or empty words:
    " Denoise + Upscale" -> ["denoise", "upscale"]; "" -> []. The one tokeniser of chain text:
    `chain_name`, `parse_chain`, the service's request parsing and study specs all use it."""
    return [w.strip().lower() for w in str(text).split("+") if w.strip()]


def chain_name(text: str) -> str:
    """The canonical text of one chain: lower-case words joined by "+" without spaces
    (" Denoise + Upscale" -> "denoise+upscale"); "none" when it names no stage."""
    return "+".join(chain_words(text)) or "none"


def parse_chain(
    text: str, roles: Mapping[str, str] | None = None, *, extra: Collection[str] = ()
) -> tuple[str, ...]:
    """Turn chain text into a tuple of stage names.

    "none" (or an empty string) -> (). Role words use `roles` (default `DEFAULT_ROLES`);
    stage names must be registered or listed in `extra` (names of instances a caller supplies).
    The words are `chain_words(text)` (case, spaces and empty words ignored), so
    `parse_chain(t) == parse_chain(chain_name(t))`. Raises InputError naming the first unknown word.
    """
    picked = {**DEFAULT_ROLES, **(roles or {})}
    known_stages = set(STAGES) | set(extra)
    words = chain_words(text)
    if words in ([], ["none"]):
        return ()
    check_chain_length(words, str(text))
    out = []
    for word in words:
        if word == "none":
            raise InputError(f"'none' stands alone (the generator output); remove it from {text!r}.")
        if word in ROLES:
            stage = picked.get(word)
            if stage not in known_stages:
                raise InputError(
                    f"The {word} stage {stage!r} is not available; available: {', '.join(sorted(known_stages))}."
                )
            out.append(stage)
        elif word in known_stages:
            out.append(word)
        else:
            known = sorted(known_stages | set(ROLES) | {"none"})
            raise InputError(f"Unknown post-processing step {word!r} in {text!r}; known: {', '.join(known)}.")
    return tuple(out)


def chain_label(stages: Sequence[str]) -> str:
    """Canonical text of a chain: "none" or names joined by "+"."""
    return "+".join(stages) if stages else "none"


@dataclass(frozen=True)
class ParsedChain:
    """One chain parsed once: `name`, its canonical text as the user wrote it ("denoise+upscale",
    see `chain_name`), and `stages`, the stage names it resolves to (() for "none"). The chain
    functions below take it in place of text and do not parse it again."""

    name: str
    stages: tuple[str, ...]

    @property
    def label(self) -> str:
        return chain_label(self.stages)


def resolve_chain(text: str, roles: Mapping[str, str] | None = None, *, extra: Collection[str] = ()) -> ParsedChain:
    """`ParsedChain(chain_name(text), parse_chain(text, roles, extra=extra))`."""
    return ParsedChain(chain_name(text), parse_chain(text, roles, extra=extra))


@dataclass
class StageRecord:
    """What one stage did: its parameters, wall time and the clip size it produced.
    reused=True when the result came from a shared prefix computed for another chain."""

    stage: str
    role: str
    params: dict[str, Any]
    seconds: float
    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]  # (width, height)
    num_frames: int
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"], d["output_size"] = list(self.input_size), list(self.output_size)
        return d


@dataclass
class ChainResult:
    """The final clip of one chain and the records of its stages, in order. name is the chain
    as the caller wrote it (normalised: lower case, no spaces), e.g. "denoise+upscale"."""

    name: str
    stages: tuple[str, ...]
    clip: Clip
    records: list[StageRecord] = field(default_factory=list)

    @property
    def label(self) -> str:
        return chain_label(self.stages)

    @property
    def seconds(self) -> float:
        """Compute time attributable to this chain (reused stages included)."""
        return sum(r.seconds for r in self.records)


class _Stages:
    """Stage instances for one call: given ones first, else built once from the registry."""

    def __init__(self, given: Mapping[str, Stage] | None):
        self._have: dict[str, Stage] = dict(given or {})

    def get(self, name: str) -> Stage:
        if name not in self._have:
            self._have[name] = create_stage(name)
        return self._have[name]


def _resolved_params(stage: Stage, params_by_stage: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    given = (params_by_stage or {}).get(stage.name)
    return resolve_params(stage.param_specs(), given)


def _check_param_keys(params_by_stage: Mapping[str, Any] | None, extra: Mapping[str, Stage] | None) -> None:
    known = set(STAGES) | set(extra or {})
    for name in params_by_stage or {}:
        if name not in known:
            raise InputError(f"Parameters given for unknown stage {name!r}; available: {', '.join(sorted(known))}.")


def _run_stage(stage: Stage, clip: Clip, params: dict[str, Any], progress: Progress) -> tuple[Clip, StageRecord]:
    t0 = time.perf_counter()
    out = stage.process(clip, params, progress)
    seconds = time.perf_counter() - t0
    if not isinstance(out, Clip):
        raise TypeError(f"stage {stage.name!r} returned {type(out).__name__}, not a Clip")
    record = StageRecord(
        stage.name, stage.role, dict(params), seconds,
        (clip.width, clip.height), (out.width, out.height), out.num_frames,
    )
    return out, record


def _prefixed(progress: Progress, head: str) -> Progress:
    """The same sink (and cancel flag) with `head` in front of every message."""
    return Progress(lambda f, m: progress(f, head + m), progress._cancel)


@dataclass(frozen=True)
class ChainPlan:
    """One distinct chain in the order `run_chains` computes it: the chain names that resolve to
    `stages`, and the prefixes of `stages` computed for it (the others were computed for an
    earlier chain and are reused)."""

    names: tuple[str, ...]
    stages: tuple[str, ...]
    runs: tuple[tuple[str, ...], ...]


def plan_chains(
    chains: Sequence[str | ParsedChain | Sequence[str]],
    roles: Mapping[str, str] | None = None,
    *,
    stages_by_name: Mapping[str, Stage] | None = None,
) -> list[ChainPlan]:
    """What `run_chains` will compute, in order (for time estimates before anything runs)."""
    named = _named(chains, roles, stages_by_name)
    plans: list[ChainPlan] = []
    seen: set[tuple[str, ...]] = set()
    for _, t in named:
        if any(p.stages == t for p in plans):
            continue
        runs = tuple(t[: i + 1] for i in range(len(t)) if t[: i + 1] not in seen)
        seen.update(runs)
        plans.append(ChainPlan(tuple(n for n, u in named if u == t), t, runs))
    return plans


def _named(chains, roles, stages_by_name) -> list[tuple[str, tuple[str, ...]]]:
    named: list[tuple[str, tuple[str, ...]]] = []
    for c in chains:
        if isinstance(c, ParsedChain):  # parsed once by the caller
            name, t = c.name, c.stages
        elif isinstance(c, str):
            t = parse_chain(c, roles, extra=tuple(stages_by_name or ()))
            name = chain_name(c)
        else:
            t = tuple(c)
            name = chain_label(t)
        for stage_name in t:
            if stage_name not in STAGES and stage_name not in (stages_by_name or {}):
                raise InputError(
                    f"Unknown post-processing stage {stage_name!r}; available: {', '.join(sorted(STAGES))}."
                )
        if name not in dict(named):
            named.append((name, t))
    return named


def run_chain(
    clip: Clip,
    stages: Sequence[str],
    params_by_stage: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress | ProgressFn | None = None,
    *,
    stages_by_name: Mapping[str, Stage] | None = None,
) -> ChainResult:
    """Run one chain (stage names in order) on `clip`.

    params_by_stage: stage name -> user parameters (validated against the stage's specs;
    defaults fill the rest). stages_by_name: resident stage instances to use instead of
    constructing from the registry. An empty chain returns the input clip unchanged.
    """
    results = run_chains(clip, [tuple(stages)], params_by_stage, progress, stages_by_name=stages_by_name)
    return results[chain_label(tuple(stages))]


def run_chains(
    clip: Clip,
    chains: Sequence[str | ParsedChain | Sequence[str]],
    params_by_stage: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress | ProgressFn | None = None,
    *,
    roles: Mapping[str, str] | None = None,
    stages_by_name: Mapping[str, Stage] | None = None,
    on_result: Callable[[ChainResult], None] | None = None,
    stage_progress: Callable[[int, tuple[str, ...]], Progress] | None = None,
) -> dict[str, ChainResult]:
    """Run several chains on one clip, computing each shared prefix once.

    chains: chain texts (parsed with `roles`), `ParsedChain`s or stage-name tuples. Returns chain
    name (the normalised text, or "a+b" for a tuple) -> ChainResult, in the given order; texts that
    resolve to the same stages are computed once. on_result is called as soon as each
    chain's result exists, so a caller can write and record it before later chains run (nothing
    already produced is lost if a later stage fails). Progress is split evenly over the distinct
    stage runs unless `stage_progress(k, prefix)` gives the sink of each stage run (k: the 0-based
    index of the chain in `plan_chains` order, prefix: the stages up to and including this one);
    each stage reports per frame, its messages prefixed "chain k of m (name): ", and may raise
    Cancelled between frames.
    """
    named = _named(chains, roles, stages_by_name)
    parsed: list[tuple[str, ...]] = []
    for _, t in named:
        if t not in parsed:
            parsed.append(t)
    _check_param_keys(params_by_stage, stages_by_name)
    prog = as_progress(progress)
    provider = _Stages(stages_by_name)

    # Every distinct non-empty prefix is one stage run.
    runs_needed = sorted({c[: i + 1] for c in parsed for i in range(len(c))}, key=lambda p: (len(p), p))
    total = max(1, len(runs_needed))
    done = 0
    # Resolve every parameter set up front: a typo fails before minutes of work, not after.
    params = {n: _resolved_params(provider.get(n), params_by_stage) for c in parsed for n in c}
    first_name = {t: n for n, t in reversed(named)}
    # Refuse a chain whose output would not fit in memory before any stage runs.
    check_chain_outputs(clip.width, clip.height, clip.num_frames,
                        [(first_name[c], [provider.get(n) for n in c], [params[n] for n in c]) for c in parsed],
                        fps=clip.fps)

    cache: dict[tuple[str, ...], tuple[Clip, StageRecord]] = {}
    results: dict[str, ChainResult] = {}
    for k, chain in enumerate(parsed):
        records: list[StageRecord] = []
        current = clip
        for i, stage_name in enumerate(chain):
            prefix = chain[: i + 1]
            if prefix in cache:
                current, rec = cache[prefix]
                records.append(StageRecord(**{**asdict(rec), "reused": True}))
                continue
            # -- per-stage sinks and "chain k of m" messages (honest progress) --
            head = f"chain {k + 1} of {len(parsed)} ({first_name[chain]}): "
            if stage_progress is None:
                prog(done / total, f"{head}{stage_name}")
                sub = prog.sub(done / total, (done + 1) / total)
            else:
                sub = stage_progress(k, prefix)
                sub(0.0, f"{head}{stage_name}")
            stage = provider.get(stage_name)
            current, rec = _run_stage(stage, current, params[stage_name], _prefixed(sub, head))
            done += 1
            cache[prefix] = (current, rec)
            records.append(rec)
        for name, t in named:
            if t == chain:
                result = ChainResult(name, chain, current, list(records))
                results[name] = result
                if on_result is not None:
                    on_result(result)
        # Free intermediate clips no later chain starts with (x4 clips are ~100 MB each).
        rest = parsed[k + 1 :]
        for p in list(cache):
            if not any(c[: len(p)] == p for c in rest):
                del cache[p]
    prog(1.0, "post-processing done")
    return {name: results[name] for name, _ in named}
