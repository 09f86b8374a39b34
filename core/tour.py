"""Multi-room tours: an ordered list of shots, joined by transitions, as one H.264 MP4.

A `Shot` is one photo with a camera move (a preset name or a `CameraPath`), a length in seconds
and a prompt. A `Tour` is the ordered shots plus how to join and deliver them. `iter_tour` (what
`Studio.run_tour` runs) renders shot by shot into the tour's run folder and yields a `TourEvent`
after each finished shot, so a player can fill in while later shots still render. Each finished
shot also goes straight into the encoder of ``tour.mp4`` (and ``tour-vertical.mp4`` when asked),
so the tour is ready as soon as its last shot is; nothing holds more than one shot in memory.

Defaults are what a real-estate videographer would pick for a listing:

* 4 s per shot: long enough to read a room, short enough that a 5-room tour stays under 30 s.
* Moves alternate push-in and pan (right, then left, ...), so consecutive rooms do not swing the
  same way; a move keeps its preset amount over the whole shot, i.e. it is slow and steady.
* 0.5 s cross-fades: a soft join between rooms without the tour feeling like a slideshow.
* 30 fps, 1280x720 (16:9 HD): what listing sites, YouTube and phones play full-screen. Ken Burns
  renders straight at 1280x720 from the photo's own pixels; AI clips (512x320 at 10 fps for
  CamI2V) are centre-cropped to 16:9 (a cover crop: no letterbox bars, which look amateurish in a
  listing) and resized, after the chain ran at the model's size and frame interpolation brought
  them to the tour's rate. Any even 16:9 size (e.g. 1920x1080, 640x360) may be asked for.
* The optional vertical cut for Reels/Shorts/TikTok is the centre 9:16 column of every frame at
  the master's pixels (nothing invented or resampled): 404x720 for a 1280x720 master.

Timing is exact: shot i covers round(seconds_i * fps) frames of the tour and the tour is the sum
of them, whatever the transition (a 3-room tour of 4 s shots is 12.000 s). A cross-fade of k
frames therefore needs k more frames of the outgoing shot (a "handle", as editors call it): that
shot is rendered k frames longer and the camera keeps moving through the fade; the incoming
shot's first k frames are mixed with the handle, weight (j + 1) / (k + 1) for the incoming frame j.
A dip to black fades the last m frames of a shot to black and the next shot's first m frames in
from black, m = round(duration * fps / 2), with the incoming shot's first frame exactly black.
A cut joins the shots as they are.

Resuming: every finished shot is saved as ``shot-NN.mp4`` (H.264, crf 14) in the run folder
together with a fingerprint of everything that decided its frames (photo bytes, move, length,
prompt, model, parameters, seed, chain, size, fps, handle). `iter_tour(..., resume=run_id)` skips
shots whose file and fingerprint are there (joining them from that file) and renders only the
rest. The photos are copied into the run folder, so a resume needs nothing from the upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from .clip import Clip
from .errors import InputError, StudioError
from .fileio import jsonable
from .imagefiles import FORMAT_EXTENSIONS
from .jobplan import resolve_chains
from .postprocess.chains import ParsedChain
from .progress import Progress, as_progress
# The plan and the pictures live in core.tour_model / core.tour_frames; every name stays importable from here.
from .tour_model import (  # noqa: F401
    DEFAULT_FPS, DEFAULT_MOVES, DEFAULT_SECONDS, DEFAULT_SIZE, DEFAULT_TRANSITION_SECONDS, FPS_CHOICES,
    MAX_SHOT_SECONDS, MAX_SHOTS, MAX_SIZE, MAX_TRANSITION_SECONDS, MIN_SHOT_SECONDS, MIN_SIZE, PHOTO_FILE,
    SHOT_CRF, SHOT_MP4, SHOT_PRESET, TOUR_CRF, TOUR_FILE, TOUR_MP4, TOUR_PRESET, TOUR_VERTICAL_MP4,
    TRANSITION_LABELS, TRANSITIONS, default_move, load_shots_file, make_tour, parse_size, Shot, Tour,
    Transition,
)
from .tour_frames import (  # noqa: F401
    assemble, Assembler, crossfade, dip_gains, fit_count, fit_frames, vertical_crop, vertical_size,
)

if TYPE_CHECKING:  # pragma: no cover
    from .runs import Run
    from .service import Studio

# --------------------------------------------------------------------------------- running

@dataclass
class TourEvent:
    """Something a tour job finished. kind: "started" | "shot" | "tour" | "done".

    "shot": `index` (0-based) of `total`, `video` its shot-NN.mp4 (tour fps and size, with the
    handle), `skipped` True when a resume found it already done. "tour": `video` tour.mp4 and
    `vertical` tour-vertical.mp4 (or None), `seconds`, `num_frames`. "done": the run is complete.
    """

    kind: str
    run_id: str
    index: int | None = None
    total: int = 0
    video: Path | None = None
    vertical: Path | None = None
    skipped: bool = False
    seconds: float | None = None
    num_frames: int | None = None
    message: str = ""


def _fingerprint(tour: Tour, index: int, photo_sha: str) -> str:
    """sha256 of everything that decides shot `index`'s frames."""
    shot = tour.shots[index].to_dict()
    shot.pop("photo")
    key = {"shot": shot, "photo": photo_sha, "fps": tour.fps, "size": [tour.width, tour.height],
           "frames": tour.render_frames(index), "model": tour.model, "chain": tour.chain,
           "roles": dict(tour.roles), "params": dict(tour.params), "negative_prompt": tour.negative_prompt,
           "seed": tour.seed + index}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _load_photos(studio: "Studio", tour: Tour) -> list[tuple[bytes, str]]:
    """(file bytes, PIL format) of every shot's photo, each decoded once to check it (one clear
    line for a bad one); the pixels are decoded again when the shot renders, so a long tour of
    big photos never holds them all."""
    from PIL import Image

    out = []
    for i, s in enumerate(tour.shots):
        if not s.photo.is_file():
            raise InputError(f"Shot {i + 1}: no such photo {s.photo}.")
        try:
            studio.load_image(s.photo)
        except InputError as exc:
            raise InputError(f"Shot {i + 1}: {exc}") from None
        data = s.photo.read_bytes()
        try:
            with Image.open(s.photo) as im:
                fmt = im.format or "PNG"
        except Exception:  # load_image accepted it; keep it under a neutral name
            fmt = ""
        out.append((data, fmt))
    return out


def iter_tour(studio: "Studio", tour: Tour | None = None, progress: Progress | None = None, *,
              resume: str | None = None, user: str | None = None) -> Iterator[TourEvent]:
    """Render `tour` shot by shot into a new run folder (or finish the run `resume`, whose
    tour.json gives the tour when `tour` is None), yielding a TourEvent after each step.

    Stops between frames when `progress` is cancelled; the run is then marked cancelled and
    keeps every finished shot, so `resume=run_id` completes it. Bad input raises InputError
    before any run folder is made.
    """
    from .runs import Run, atomic_write_bytes, sha256_bytes  # noqa: F811 (the run-time import)

    prog = as_progress(progress)
    if resume:
        run = Run.open(studio.runs_root(user), resume, min_free_bytes=studio.settings.min_free_bytes,
                       free_space_fn=studio.settings.free_space_fn)
        if run.data.get("kind") != "tour" or not (run.dir / TOUR_FILE).is_file():
            raise InputError(f"Run {resume} is not a tour.")
        saved = Tour.from_dict(json.loads((run.dir / TOUR_FILE).read_text(encoding="utf-8")), base=run.dir)
        tour = saved if tour is None else tour
    elif tour is None:
        raise InputError("No tour to run.")
    generator = studio.generator(tour.model)
    studio._require_available(tour.model)
    roles = {**_default_roles(), **dict(tour.roles)}
    # the chain is parsed once here; the shots run its stage names
    chain = resolve_chains(studio, [tour.chain], roles)[0] if tour.chain != "none" else ParsedChain("none", ())
    stages = studio._stages_for([chain], roles) if chain.stages else {}
    photos = _load_photos(studio, tour)

    if not resume:
        run = Run.create(studio.runs_root(user), kind="tour", min_free_bytes=studio.settings.min_free_bytes,
                         free_space_fn=studio.settings.free_space_fn,
                         params={"model": tour.model, "chain": tour.chain, "fps": tour.fps,
                                 "size": [tour.width, tour.height], "transition": tour.transition.kind,
                                 "shots": len(tour.shots), "device": studio.device},
                         seeds={"generator": tour.seed})
    n = len(tour.shots)
    with run:
        if run.status != "running":
            run.update(status="running", error=None)
        yield TourEvent("started", run.id, total=n, message=f"tour {run.id}: {n} shot(s), "
                                                           f"{tour.duration:.2f} s at {tour.fps} fps")
        # The photos travel with the run, so a resume never depends on an upload's temp file.
        local_shots = []
        shas = []
        for i, ((data, fmt), shot) in enumerate(zip(photos, tour.shots)):
            dest = run.dir / PHOTO_FILE.format(index=i, ext=FORMAT_EXTENSIONS.get(fmt.upper(), ".img"))
            if not (dest.is_file() and dest.read_bytes() == data):
                atomic_write_bytes(dest, data)
            shas.append(sha256_bytes(data))
            local_shots.append(replace(shot, photo=Path(dest.name)))
        local = replace(tour, shots=tuple(local_shots))
        atomic_write_bytes(run.dir / TOUR_FILE, json.dumps(local.to_dict(), indent=2).encode("utf-8"))
        state = run.data.get("tour") or {}
        done = dict(state.get("shots") or {})
        run.update(tour={"duration": tour.duration, "num_frames": tour.num_frames, "shots": done})

        from .video import Mp4Stream, estimate_bytes, write_mp4

        est = estimate_bytes(Clip(np.zeros((1, tour.height, tour.width, 3), np.uint8), tour.fps), "mp4")
        run.check_space((est - 1024**2) * 3 * tour.num_frames // 2 + est, "the tour's shots and video")
        video, vpath = run.dir / TOUR_MP4, run.dir / TOUR_VERTICAL_MP4
        asm = Assembler(tour)
        t_join = 0.0
        # tour.mp4 is encoded while the shots render: each finished shot's frames go straight in.
        with contextlib.ExitStack() as stack:
            main = stack.enter_context(Mp4Stream(video, tour.fps, crf=TOUR_CRF, preset=TOUR_PRESET))
            vert = stack.enter_context(Mp4Stream(vpath, tour.fps, crf=TOUR_CRF, preset=TOUR_PRESET)) \
                if tour.vertical else None
            for i, shot in enumerate(tour.shots):
                sub = prog.sub(i / n, (i + 1) / n)
                fp = _fingerprint(tour, i, shas[i])
                path = run.dir / SHOT_MP4.format(index=i)
                rec = done.get(str(i)) or {}
                if rec.get("fingerprint") == fp and path.is_file():
                    # Kept from an earlier, interrupted run of this tour: joined from its file.
                    frames = _read_shot(path, tour.render_frames(i))
                    event = TourEvent("shot", run.id, i, n, path, skipped=True, seconds=shot.seconds,
                                      num_frames=frames.shape[0], message=f"shot {i + 1}/{n} kept from before")
                else:
                    t0 = time.perf_counter()
                    image = studio.load_image(run.dir / local_shots[i].photo)
                    clip, info = _render_shot(studio, generator, tour, i, image, stages, chain, sub.sub(0.0, 0.7))
                    del image
                    written = write_mp4(clip, path, crf=SHOT_CRF, preset=SHOT_PRESET, progress=sub.sub(0.7, 0.8))
                    frames = clip.frames
                    done[str(i)] = {"file": path.name, "fingerprint": fp, "frames": written.num_frames,
                                    "seconds": shot.seconds, "move": shot.move, "seed": tour.seed + i,
                                    "render_s": time.perf_counter() - t0, "info": jsonable(info)}
                    with run._lock:
                        run._record_file(path)
                    run.update(tour={"shots": done})
                    event = TourEvent("shot", run.id, i, n, path, seconds=shot.seconds,
                                      num_frames=written.num_frames, message=f"shot {i + 1}/{n} ready")
                t0 = time.perf_counter()
                out = asm.add(frames)
                del frames
                join = sub.sub(0.8, 1.0)
                for j, frame in enumerate(out):
                    main.append(frame)
                    if vert is not None:
                        vert.append(np.ascontiguousarray(vertical_crop(frame)))
                    if j % 10 == 9:
                        join((j + 1) / len(out), f"shot {i + 1}/{n}: encoding the tour")
                t_join += time.perf_counter() - t0
                yield event
        t0 = time.perf_counter()
        with run._lock:
            run._record_file(video)
            if tour.vertical:
                run._record_file(vpath)
        if not tour.vertical and vpath.exists():
            vpath.unlink()  # an earlier run of this tour asked for it; this one did not
        run.add_timing("encode_tour", t_join + time.perf_counter() - t0)
        vertical = vpath if tour.vertical else None
        run.update(tour={"file": video.name, "vertical_file": vertical.name if vertical else None})
        prog(1.0, "tour ready")
        yield TourEvent("tour", run.id, total=n, video=video, vertical=vertical, seconds=tour.duration,
                        num_frames=tour.num_frames, message=f"tour ready: {tour.duration:.2f} s")
        run.finish()
        yield TourEvent("done", run.id, total=n, video=video, vertical=vertical, seconds=tour.duration,
                        num_frames=tour.num_frames, message="done")


def _default_roles() -> dict[str, str]:
    from .postprocess.chains import DEFAULT_ROLES

    return dict(DEFAULT_ROLES)


def _render_shot(studio: "Studio", generator: Any, tour: Tour, index: int, image: np.ndarray,
                 stages: Mapping[str, Any], chain: ParsedChain, prog: Progress) -> tuple[Clip, dict[str, Any]]:
    """Shot `index` as a Clip of tour.render_frames(index) frames at the tour's fps and size.

    Ken Burns renders natively at the tour's size, fps and frame count. An AI generator gets a
    camera path of round(render seconds * its fps) frames at its own size (a long shot, made of
    chained segments by the generator), then the chain runs at the model's size, frame
    interpolation brings the clip to the tour's fps, and it is cropped/resized to 16:9.
    """
    from .generators.base import GenerateRequest
    from .params import resolve_params
    from .postprocess import chains as chainlib

    shot = tour.shots[index]
    want = tour.render_frames(index)
    native = not generator.is_ai and generator.name == "kenburns"
    entry = studio.registry.get(tour.model)
    if native:
        given = {**dict(tour.params), "width": tour.width, "height": tour.height, "fps": float(tour.fps),
                 "num_frames": 0}
        n_frames, aspect = want, tour.width / tour.height
    else:
        given = dict(tour.params)
        n_frames = max(2, int(round(want / tour.fps * generator.fps)))
        aspect = generator.width / generator.height
    params = resolve_params(generator.param_specs(), given, entry.defaults)
    path = shot.camera(n_frames, aspect)
    request = GenerateRequest(image, path, shot.prompt, tour.negative_prompt, tour.seed + index, params)
    gen_prog = prog.sub(0.0, 0.6 if tour.chain != "none" else 0.9)
    with studio._device_lock:
        gen_prog(0.0, f"shot {index + 1}: {entry.label}")
        result = studio._with_oom(lambda: generator.generate(request, gen_prog),
                                  task=f"generating shot {index + 1} with {entry.label}")
    clip = result.clip
    info: dict[str, Any] = {"generator": dict(result.info), "requested_frames": n_frames,
                            "native_frames": clip.num_frames, "native_fps": clip.fps,
                            "native_size": [clip.width, clip.height], "warnings": []}
    if clip.num_frames != n_frames:
        # A generator without segment chaining returns its fixed clip: the shot is then that clip
        # spread over the shot's length, and the run says so.
        info["warnings"].append(f"{entry.label} made {clip.num_frames} frames of the {n_frames} asked for; "
                                f"the shot stretches them over {want / tour.fps:g} s.")
    if chain.stages:
        chain_prog = prog.sub(0.6, 0.9)
        with studio._device_lock:
            res = studio._with_oom(lambda: chainlib.run_chain(
                clip, chain.stages, None, chain_prog,
                stages_by_name=stages), task=f"post-processing shot {index + 1}")
        clip = res.clip
        info["chain"] = [r.to_dict() for r in res.records]
    if abs(clip.fps - tour.fps) > 1e-6:
        clip, how = _retime(clip, tour.fps)
        info["retime"] = how
    frames = fit_count(clip.frames, want)
    frames = fit_frames(frames, tour.width, tour.height)
    prog(1.0, f"shot {index + 1} rendered")
    return Clip(np.ascontiguousarray(frames), float(tour.fps)), info


def _retime(clip: Clip, fps: float) -> tuple[Clip, str]:
    """The clip at `fps` by optical-flow frame interpolation (core.postprocess.interpolate).

    Where that stage is not part of this installation, frames are repeated to the new rate
    instead and the run records it, since a tour must still come out at its own frame rate."""
    try:
        from .postprocess.interpolate import retime
    except ImportError:
        n = max(2, int(round(clip.num_frames * fps / clip.fps)))
        idx = np.minimum((np.arange(n) * clip.fps / fps).astype(int), clip.num_frames - 1)
        return Clip(np.ascontiguousarray(clip.frames[idx]), float(fps)), "repeat (no interpolation stage installed)"
    return retime(clip, fps, method="dis"), "dis"


def _read_shot(path: Path, n: int) -> np.ndarray:
    from .video import read_video

    clip = read_video(path, max_pixels=None)  # our own shot file, bounded when it was made
    if clip.num_frames != n:
        raise StudioError(f"{path.name} holds {clip.num_frames} frames, {n} expected; render the tour again.")
    return clip.frames
