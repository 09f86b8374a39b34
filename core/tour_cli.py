"""`python -m core tour`: a multi-room tour from the command line (see `core.tour`).

    python -m core tour --photos a.jpg b.jpg c.jpg --moves push-in,pan-left --seconds 4 --fps 30 \
        --out tour/ [--shots shots.json] [--transition crossfade|dip|cut] [--vertical] \
        [--model kenburns] [--chain none] [--size 1280x720] [--resume]

writes OUT/tour.mp4 (and OUT/tour-vertical.mp4 with --vertical), OUT/shots/shot-NN.mp4,
OUT/tour.json and OUT/run.json; the run folder itself lives in OUT/.runs. `--resume` finishes the
last unfinished tour in OUT (shots already rendered with the same settings are kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .errors import InputError


def add_tour_parser(sub: "argparse._SubParsersAction") -> None:
    t = sub.add_parser("tour", help="a multi-room tour: shots joined by transitions into one MP4")
    t.add_argument("--photos", nargs="+", default=[], help="the photos, in tour order")
    t.add_argument("--shots", default=None, help="a JSON shot list instead of --photos: [{\"photo\", \"move\", "
                                                 "\"seconds\", \"prompt\"}, ...] or {\"shots\": [...], tour fields}")
    t.add_argument("--moves", default="", help="comma-separated camera moves, one per photo (fewer: the rest "
                                               "alternate push-in and pan; one: used for every photo)")
    t.add_argument("--seconds", default=None, help="shot length in seconds (default 4), or one per photo, "
                                                   "comma-separated")
    t.add_argument("--prompt", action="append", default=[], help="prompt per photo, in order (repeatable)")
    t.add_argument("--fps", type=int, default=None, help="24 or 30 (default 30)")
    t.add_argument("--size", default=None, help="16:9 output size, e.g. 1280x720 (default), 1920x1080, 640x360")
    t.add_argument("--transition", default=None, help="crossfade (default), dip (to black) or cut")
    t.add_argument("--transition-seconds", type=float, default=None, help="length of each transition (default 0.5)")
    t.add_argument("--vertical", action="store_true", help="also write a 9:16 crop for social media")
    t.add_argument("--model", default=None, help="generator of every shot (default kenburns, the no-AI preview)")
    t.add_argument("--chain", default=None, help="post-processing chain for every shot, e.g. denoise (default none)")
    t.add_argument("--denoiser", default="nlmeans", help="stage used for 'denoise' (default nlmeans)")
    t.add_argument("--upscaler", default="lanczos", help="stage used for 'upscale' (default lanczos)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--param", action="append", default=[], help="generator parameter NAME=VALUE (repeatable)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--resume", action="store_true", help="finish the last unfinished tour in --out")
    t.add_argument("--models", default=None, help="model registry (default models.json)")
    t.add_argument("--device", default="auto")
    t.add_argument("--dtype", default="auto")
    t.set_defaults(func=cmd_tour)


def build_tour(args: argparse.Namespace):
    """The Tour the arguments describe (a --shots file, overridden by the options given)."""
    from . import tour as tourlib
    from .study import parse_assignments

    options: dict = {}
    if args.fps is not None:
        options["fps"] = args.fps
    if args.size:
        options["width"], options["height"] = tourlib.parse_size(args.size)
    if args.transition or args.transition_seconds is not None:
        options["transition"] = tourlib.Transition(
            args.transition or "crossfade",
            tourlib.DEFAULT_TRANSITION_SECONDS if args.transition_seconds is None else args.transition_seconds)
    if args.vertical:
        options["vertical"] = True
    if args.model:
        options["model"] = args.model
    if args.chain:
        options["chain"] = args.chain
    if args.seed is not None:
        options["seed"] = args.seed
    options["roles"] = {"denoise": args.denoiser, "upscale": args.upscaler}
    if args.param:
        options["params"] = parse_assignments(args.param)
    if args.shots:
        if args.photos:
            raise InputError("Give either --photos or --shots, not both.")
        from dataclasses import replace

        return replace(tourlib.load_shots_file(args.shots), **options)
    if not args.photos:
        raise InputError("tour needs --photos (in tour order) or --shots FILE.")
    seconds = None
    if args.seconds is not None:
        parts = [p.strip() for p in str(args.seconds).split(",") if p.strip()]
        seconds = parts[0] if len(parts) == 1 else parts
    moves = [m for m in args.moves.split(",") if m.strip()]
    return tourlib.make_tour(args.photos, moves=moves, seconds=seconds, prompts=args.prompt, **options)


def cmd_tour(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .runs import list_runs
    from .service import Studio, StudioSettings
    from .tour import TOUR_FILE

    out = Path(args.out).expanduser()
    tour = build_tour(args)
    studio = Studio(StudioSettings(models=Path(args.models) if args.models else None, outputs=out / ".runs",
                                   device=args.device, dtype=args.dtype))
    for msg in studio.startup_messages():
        print("warning:", msg, file=sys.stderr)
    resume = None
    if args.resume:
        pending = [r for r in list_runs(out / ".runs") if r.status != "complete" and
                   (out / ".runs" / r.id / TOUR_FILE).is_file()]
        if not pending:
            raise InputError(f"No unfinished tour in {out} to resume.")
        resume = pending[0].id  # newest first
    bar = tqdm(total=1000, desc="tour", unit="‰", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def progress(frac: float, msg: str) -> None:
        bar.n = int(frac * 1000)
        bar.set_postfix_str(msg[:50], refresh=False)
        bar.refresh()

    final = None
    try:
        for ev in studio.run_tour(tour, progress, resume=resume):
            if ev.kind == "shot":
                tqdm.write(f"shot {ev.index + 1}/{ev.total}: {'kept' if ev.skipped else 'rendered'} ({ev.video.name})")
            elif ev.kind == "tour":
                final = ev
    finally:
        bar.close()
    run = studio.open_run(final.run_id)
    out.mkdir(parents=True, exist_ok=True)
    _link_or_copy(final.video, out / final.video.name)
    if final.vertical is not None:
        _link_or_copy(final.vertical, out / final.vertical.name)
    for i in range(final.total):
        _link_or_copy(run.dir / f"shot-{i:02d}.mp4", out / "shots" / f"shot-{i:02d}.mp4")
    for name in (TOUR_FILE, "run.json"):
        _link_or_copy(run.dir / name, out / name)
    print(f"tour: {len(tour.shots)} shot(s), {final.seconds:.2f} s at {tour.fps} fps, "
          f"{tour.width}x{tour.height} -> {out / final.video.name}"
          + (f" (+ {out / final.vertical.name})" if final.vertical else ""))
    return 0


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

