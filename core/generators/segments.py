"""Shots of any length from fixed-length image-to-video models: autoregressive segments.

A CamI2V-family model makes 16 frames, SVD 14 or 25. A shot of N frames is made of segments of
that native length F, chained: segment 0 starts from the photo; segment k+1 is conditioned on a
frame of segment k and continues the shot from there.

Plan (`plan_segments`). Consecutive segments share `overlap` = o >= 1 frames of the shot's
timeline, so segment k starts at shot frame k * (F - o) and covers F frames; it is conditioned
on segment k-1's frame at that same shot frame (with o = 1, segment k-1's last frame). Segments
are added until they cover N frames; the last one may run past the shot's end, and the frames
beyond N are generated and dropped (its camera is the user's path continued at constant
velocity, `core.camera.extend_path`), so every segment is conditioned on the frame its
predecessor made at the same instant and the overlap is the same at every join.
Example: N = 40, F = 16, o = 1 -> starts 0, 15, 30 (3 segments, the last covers frames 30-45).

Camera (camera models). Segment k's poses are shot frames [s_k, s_k + F) re-expressed relative
to the conditioning frame s_k (`core.camera.rebase_path`): pose 0 is the conditioning image's
camera, as the models were trained; translations keep the path's units.

Joins. The o shared frames are cross-faded (weight of the later segment (j + 1) / (o + 1) at
the j-th shared frame), never duplicated, and the result has exactly N frames.

Seeds. Segment 0 uses the job seed itself (a one-segment shot equals the plain generation);
segment k > 0 uses a seed drawn from `SeedSequence([seed, k])`, so every segment's noise is
reproducible and independent of the others.

Resume. With `GenerateRequest.run_dir`, every finished segment is written losslessly (npz of
the uint8 frames) under `<run_dir>/segments/` together with a manifest that fingerprints what
the segments depend on. A later call with the same request (and run_dir) loads the finished
segments and continues from the first missing one: the conditioning frames are the saved bytes,
the seeds are the same, so it yields exactly the frames of an uninterrupted run.

Seam score (`seam_report`). Across each join, the flow-compensated difference between
consecutive frames (core.flow, DIS, occlusion-masked) compared with the median of the same
measure between consecutive frames inside segments: about 1 means the join is as smooth as the
rest of the shot, well above 1 means it stutters.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..clip import Clip
from ..errors import InputError, StudioError
from ..progress import Progress, as_progress
from .base import GenerateRequest, GenerateResult

if TYPE_CHECKING:  # pragma: no cover
    from .base import Generator

SEGMENTS_DIR = "segments"
MANIFEST = "manifest.json"
SEGMENT_FILE = "segment-{index:03d}.npz"
MAX_SHOT_FRAMES = 1024
# Within-segment pairs sampled for the seam score's reference median (bounds its cost).
SEAM_SAMPLE_PAIRS = 24


# --------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class SegmentPlan:
    """Where each segment sits on the shot's timeline.

    total: N, the shot's frame count. native: F, frames per segment. overlap: o.
    starts: shot frame of each segment's frame 0 (which is also its conditioning frame).
    """

    total: int
    native: int
    overlap: int
    starts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def covered(self) -> int:
        """Frames generated on the timeline (>= total; the excess of the last segment is dropped)."""
        return self.starts[-1] + self.native

    def conditioning(self, k: int) -> tuple[int, int]:
        """(segment, local frame) that conditions segment k > 0: segment k-1's frame at s_k."""
        if not 0 < k < self.count:
            raise ValueError(f"segment {k} has no conditioning segment")
        return k - 1, self.starts[k] - self.starts[k - 1]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "native": self.native, "overlap": self.overlap, "starts": list(self.starts),
                "count": self.count}


def plan_segments(total: int, native: int, overlap: int = 1) -> SegmentPlan:
    """The plan for a `total`-frame shot from segments of `native` frames sharing `overlap`."""
    total, native, overlap = int(total), int(native), int(overlap)
    if native < 2:
        raise InputError(f"A segment needs at least 2 frames, got {native}.")
    if not 2 <= total <= MAX_SHOT_FRAMES:
        raise InputError(f"A shot needs between 2 and {MAX_SHOT_FRAMES} frames, got {total}.")
    if not 1 <= overlap <= native // 2:
        raise InputError(f"Segment overlap must be between 1 and {native // 2} frames for {native}-frame "
                         f"segments, got {overlap}.")
    stride = native - overlap
    starts = [0]
    while starts[-1] + native < total:
        starts.append(starts[-1] + stride)
    return SegmentPlan(total, native, overlap, tuple(starts))


def segment_seed(seed: int, k: int) -> int:
    """Seed of segment k: the job seed for k = 0, else a 32-bit draw of SeedSequence([seed, k])."""
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint32)[0])


def segment_camera(path: Any, plan: SegmentPlan, k: int) -> Any:
    """Segment k's camera: shot frames [s_k, s_k + F) of `path` (N poses, continued at constant
    velocity past the end when needed) re-based on the conditioning frame s_k."""
    from ..camera import extend_path, rebase_path

    if path.num_frames != plan.total:
        raise InputError(f"The camera path has {path.num_frames} poses; the shot has {plan.total} frames.")
    full = extend_path(path, plan.covered) if plan.covered > path.num_frames else path
    s = plan.starts[k]
    return rebase_path(full, s, s, s + plan.native, name=f"{path.name} (segment {k + 1} of {plan.count})")


def blend_segments(segments: Sequence[np.ndarray], plan: SegmentPlan) -> np.ndarray:
    """Segments (each (F, H, W, 3) uint8) -> the shot (N, H, W, 3) uint8.

    Shared frames are cross-faded linearly (later segment's weight (j + 1) / (o + 1) at shared
    frame j), rounded to nearest; frames past N are dropped.
    """
    if len(segments) != plan.count:
        raise ValueError(f"{len(segments)} segments for a {plan.count}-segment plan")
    h, w = segments[0].shape[1:3]
    out = np.empty((plan.covered, h, w, 3), np.uint8)
    for k, seg in enumerate(segments):
        if seg.shape != (plan.native, h, w, 3) or seg.dtype != np.uint8:
            raise ValueError(f"segment {k} has shape {seg.shape} {seg.dtype}, expected ({plan.native}, {h}, {w}, 3) uint8")
        s = plan.starts[k]
        if k == 0:
            out[:plan.native] = seg
            continue
        shared = plan.starts[k - 1] + plan.native - s
        wts = (np.arange(1, shared + 1, dtype=np.float32) / (shared + 1))[:, None, None, None]
        mixed = (1.0 - wts) * out[s:s + shared].astype(np.float32) + wts * seg[:shared].astype(np.float32)
        out[s:s + shared] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        out[s + shared:s + plan.native] = seg[shared:]
    return np.ascontiguousarray(out[:plan.total])


# --------------------------------------------------------------------------------- the store

def fingerprint(generator: str, request: GenerateRequest, plan: SegmentPlan, params: Mapping[str, Any]) -> str:
    """sha256 of everything the segments depend on: model, photo, path, prompt, seed, params, plan."""
    h = hashlib.sha256()
    h.update(json.dumps({"generator": generator, "prompt": request.prompt, "negative": request.negative_prompt,
                         "seed": int(request.seed), "plan": plan.to_dict(),
                         "params": {k: params[k] for k in sorted(params)}},
                        sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(request.image).tobytes())
    h.update(str(request.image.shape).encode())
    if request.camera is not None:
        h.update(np.ascontiguousarray(request.camera.w2c).tobytes())
        h.update(np.ascontiguousarray(request.camera.intrinsics).tobytes())
    return h.hexdigest()


class SegmentStore:
    """Finished segments of one shot under `<run_dir>/segments/`, written atomically.

    manifest.json: {"fingerprint", "plan", "seeds"}; segment-000.npz: `frames` (F, H, W, 3)
    uint8 (lossless, so a resumed segment is conditioned on exactly the bytes it was before).
    """

    def __init__(self, run_dir: Path | str, key: str, plan: SegmentPlan, seeds: Sequence[int]):
        self.dir = Path(run_dir) / SEGMENTS_DIR
        self.key = key
        self.plan = plan
        self.seeds = list(seeds)
        self._ready = False

    def _manifest(self) -> dict[str, Any]:
        return {"fingerprint": self.key, "plan": self.plan.to_dict(), "seeds": self.seeds}

    def open(self) -> int:
        """Check (or create) the manifest; returns how many leading segments are finished.
        A manifest of another shot raises InputError (its segments cannot be reused)."""
        from ..fileio import atomic_write_json

        self.dir.mkdir(parents=True, exist_ok=True)
        man = self.dir / MANIFEST
        if man.is_file():
            try:
                old = json.loads(man.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StudioError(f"{man} is damaged: {exc}") from None
            if old.get("fingerprint") != self.key:
                raise InputError("The saved segments in this run were made from another photo, camera path, "
                                 "prompt, seed or settings; they cannot be resumed with these.")
        else:
            atomic_write_json(man, self._manifest())
        self._ready = True
        done = 0
        while done < self.plan.count and self.path(done).is_file():
            done += 1
        return done

    def path(self, k: int) -> Path:
        return self.dir / SEGMENT_FILE.format(index=k)

    def save(self, k: int, frames: np.ndarray) -> Path:
        from ..fileio import atomic_write_bytes

        buf = io.BytesIO()
        np.savez_compressed(buf, frames=np.ascontiguousarray(frames))
        atomic_write_bytes(self.path(k), buf.getvalue())
        return self.path(k)

    def save_info(self, info: Mapping[str, Any]) -> None:
        """Segment 0's result info (crop box, prompt, ...), which a resumed shot reports as its own."""
        from ..fileio import atomic_write_json

        atomic_write_json(self.dir / "segment-000-info.json", info)

    def load_info(self) -> dict[str, Any]:
        p = self.dir / "segment-000-info.json"
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
        except (OSError, ValueError):
            return {}

    def load(self, k: int) -> np.ndarray:
        try:
            with np.load(self.path(k)) as z:
                frames = z["frames"]
        except (OSError, ValueError, KeyError) as exc:
            raise StudioError(f"Saved segment {self.path(k)} is damaged ({exc}); delete it to regenerate it.") from None
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != self.plan.native:
            raise StudioError(f"Saved segment {self.path(k)} has shape {frames.shape} {frames.dtype}, "
                              f"expected {self.plan.native} uint8 frames.")
        return frames


def finished_segments(run_dir: Path | str) -> int:
    """How many segment files a run folder holds (0 when it has none): a run with any is resumable."""
    d = Path(run_dir) / SEGMENTS_DIR
    return len(list(d.glob("segment-*.npz"))) if d.is_dir() else 0


# --------------------------------------------------------------------------------- running

@dataclass(frozen=True)
class SegmentTask:
    """One segment to generate. image: (H, W, 3) uint8 conditioning frame (the photo for k = 0,
    else the predecessor's frame at `start`). camera: its re-based path (None without camera)."""

    index: int
    count: int
    start: int
    seed: int
    image: np.ndarray
    camera: Any


def _segment_progress(parent: Progress, k: int, n: int) -> Progress:
    """Segment k's share of `parent`, with messages prefixed "segment k+1 of n, "."""
    sub = parent.sub(k / n, (k + 1) / n)
    prefix = f"segment {k + 1} of {n}, "
    return Progress(lambda f, m: sub(f, prefix + (m or "")))


def generate_segments(
    generator: "Generator",
    request: GenerateRequest,
    progress: Progress,
    native: int,
    params: Mapping[str, Any],
    render: Callable[[GenerateRequest, Progress], GenerateResult],
    *,
    camera: bool = True,
) -> GenerateResult:
    """The shot of `request.num_frames` frames from segments of `native` frames; see the module
    docstring. `render(segment_request, progress)` makes one native-length clip (the generator's
    single-pass generate); `params` are the resolved generator parameters (fingerprinted).

    Result info: segment 0's info (crop box, prompt, ...) plus "segments" (plan, seeds, which
    segments were resumed, timings) and "seams" (`seam_report`).
    """
    progress = as_progress(progress)
    t_start = time.perf_counter()
    n_frames = int(request.num_frames)
    plan = plan_segments(n_frames, native, request.segments.overlap)
    seeds = [segment_seed(request.seed, k) for k in range(plan.count)]
    path = request.camera
    if camera and path is not None and path.num_frames != n_frames:
        path = path.resampled(n_frames)
        request = replace(request, camera=path)
    store = None
    done = 0
    if request.run_dir is not None:
        store = SegmentStore(request.run_dir, fingerprint(generator.name, request, plan, params), plan, seeds)
        done = store.open()
    gen_prog = progress.sub(0.0, 0.95)
    segments: list[np.ndarray] = []
    first_info: dict[str, Any] = {}
    fps: Optional[float] = None
    timings: list[float] = []
    for k in range(plan.count):
        seg_prog = _segment_progress(gen_prog, k, plan.count)
        if k < done:
            segments.append(store.load(k))
            if k == 0:
                first_info = store.load_info()
                fps = first_info.get("fps")
            seg_prog(1.0, "saved earlier, reused")
            continue
        seg_prog(0.0, "starting")  # also the cancel point between segments
        if k == 0:
            image = request.image
        else:
            j, local = plan.conditioning(k)
            image = segments[j][local]
        seg_camera = segment_camera(path, plan, k) if (camera and path is not None) else path
        t0 = time.perf_counter()
        res = render(replace(request, image=image, camera=seg_camera, seed=seeds[k], num_frames=None,
                             run_dir=None), seg_prog)
        timings.append(time.perf_counter() - t0)
        frames = res.clip.frames
        if frames.shape[0] != native:
            raise StudioError(f"{generator.label} made {frames.shape[0]} frames for a {native}-frame segment.")
        if k == 0:
            first_info, fps = res.record(), res.clip.fps  # typed fields too (crop box for fidelity)
        fps = fps or res.clip.fps
        if store is not None:
            if k == 0:
                store.save_info(res.record())
            store.save(k, frames)
        segments.append(frames)
    if fps is None:  # every segment came from the store: the generator's native rate
        fps = float(params.get("fps", generator.fps))
    progress(0.96, f"joining {plan.count} segments")
    shot = blend_segments(segments, plan)
    progress(0.97, "measuring the seams")
    seams = seam_report(shot, plan)
    info = dict(first_info) if first_info else {"model": generator.name}
    if not first_info and request.image is not None:
        info["photo_size"] = [int(request.image.shape[1]), int(request.image.shape[0])]
    info.update({
        "num_frames": plan.total,
        "fps": float(fps),
        "segments": {**plan.to_dict(), "seeds": seeds, "resumed": done,
                     "generate_s": timings, "total_s": time.perf_counter() - t_start},
        "seams": seams,
    })
    if camera and path is not None:
        info["camera_frames_in"] = path.num_frames
    progress(1.0, f"{plan.total} frames from {plan.count} segments")
    box = info.pop("crop_box", None)  # segment 0 frames the photo: the shot's fidelity reference
    info.pop("timings", None), info.pop("peak_memory", None), info.pop("params", None)
    return GenerateResult(Clip(shot, fps), info, crop_box=tuple(box) if box else None,
                          params=dict(params))


# --------------------------------------------------------------------------------- seams

def pair_difference(a: np.ndarray, b: np.ndarray, method: str = "dis") -> float:
    """Mean absolute difference (0-255 grey levels) between frame a and frame b warped onto a
    along the dense flow, over the pixels whose flow passes the forward-backward check."""
    from ..flow import flow_pair, to_grey, warp

    fp = flow_pair(a, b, method)
    ga = to_grey(a).astype(np.float32)
    gb = warp(to_grey(b), fp.forward).astype(np.float32)
    valid = fp.valid
    if valid.mean() < 0.05:  # flow unusable (e.g. a cut): the plain difference
        return float(np.abs(ga - to_grey(b).astype(np.float32)).mean())
    return float(np.abs(ga - gb)[valid].mean())


def join_pairs(plan: SegmentPlan) -> list[list[int]]:
    """Per join k = 1..count-1, the pairs (t, t+1) (given by t) that cross it: from the frame
    before the shared frames to the first frame after them, within the shot."""
    out = []
    for k in range(1, plan.count):
        s = plan.starts[k]
        shared = plan.starts[k - 1] + plan.native - s
        ts = [t for t in range(s - 1, s + shared) if 0 <= t < plan.total - 1]
        out.append(ts)
    return out


def seam_report(frames: np.ndarray, plan: SegmentPlan, method: str = "dis") -> dict[str, Any]:
    """Seam score of every join of a chained shot.

    frames: (N, H, W, 3) uint8, the blended shot. For each join: "diff" is the largest
    flow-compensated difference of the pairs crossing it, "score" = diff / the median of the same
    measure over (up to SEAM_SAMPLE_PAIRS evenly spaced) pairs inside segments. Returns
    {"joins": [{"join", "frame", "diff", "score"}], "within_median", "worst_score", "method"};
    "joins" is empty for a one-segment shot.
    """
    joins = join_pairs(plan)
    crossing = {t for ts in joins for t in ts}
    inside = [t for t in range(plan.total - 1) if t not in crossing]
    if len(inside) > SEAM_SAMPLE_PAIRS:
        inside = [inside[i] for i in np.linspace(0, len(inside) - 1, SEAM_SAMPLE_PAIRS).round().astype(int)]
    cache: dict[int, float] = {}

    def diff(t: int) -> float:
        if t not in cache:
            cache[t] = pair_difference(frames[t], frames[t + 1], method)
        return cache[t]

    rows = []
    if joins:
        within = [diff(t) for t in inside]
        med = float(np.median(within)) if within else float("nan")
        for k, ts in enumerate(joins, start=1):
            d = max((diff(t) for t in ts), default=float("nan"))
            score = d / med if med > 1e-6 else (1.0 if d <= 1e-6 else float("inf"))
            rows.append({"join": k, "frame": plan.starts[k], "diff": d, "score": float(score)})
    else:
        med = float("nan")
    worst = max((r["score"] for r in rows), default=None)
    return {"joins": rows, "within_median": med, "worst_score": worst, "method": method}


def seam_summary(seams: Optional[Mapping[str, Any]]) -> str:
    """One line for the dashboard: 'Seams: join 1 x1.2 · join 2 x3.4 (1 = as smooth as inside segments)'."""
    if not seams or not seams.get("joins"):
        return ""
    parts = [f"join {r['join']} (frame {r['frame']}) ×{r['score']:.2f}" for r in seams["joins"]]
    return ("Seam score: " + " · ".join(parts) +
            " (flow-compensated change across the join ÷ the median inside segments; ≈1 is smooth)")
