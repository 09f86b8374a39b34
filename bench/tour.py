"""Tour speed: the 3-room, 12-second, 30 fps Ken Burns tour end to end (render every shot, write
the shot files, join and encode tour.mp4 and the 9:16 cut), wall seconds per run.

    python -m bench.tour [--runs 3] [--size 1280x720] [--no-vertical] [--quality high]

Uses the three example rooms; prints figures only, never asserts. Each run also prints where
the time went (render / shot files / tour encoding) from the run record.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from core.service import Studio, StudioSettings
from core.tour import Transition, make_tour, parse_size

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--transition", default="crossfade")
    ap.add_argument("--quality", default="high", help="Ken Burns quality: high (default) or fast")
    ap.add_argument("--no-vertical", action="store_true")
    args = ap.parse_args()
    photos = sorted((REPO / "assets" / "examples").glob("*.jpg"))[:3]
    width, height = parse_size(args.size)
    tour = make_tour(photos, seconds=args.seconds, fps=args.fps, width=width, height=height,
                     vertical=not args.no_vertical, transition=Transition(args.transition, 0.5),
                     params={"quality": args.quality})
    print(f"tour: {len(tour.shots)} rooms x {args.seconds:g} s = {tour.duration:.2f} s, {tour.num_frames} frames "
          f"at {tour.fps} fps, {width}x{height}{'' if args.no_vertical else ' + 9:16'}, {tour.transition.kind}, "
          f"Ken Burns quality {args.quality}")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(StudioSettings(outputs=Path(tmp) / "outputs"))
        for k in range(args.runs):
            t0 = time.perf_counter()
            events = list(studio.run_tour(tour))
            wall = time.perf_counter() - t0
            times.append(wall)
            run = studio.open_run(events[-1].run_id)
            shots = run.data["tour"]["shots"]
            render = sum(s["render_s"] for s in shots.values())
            gen = sum(s["info"]["generator"]["timings"]["render_s"] for s in shots.values())
            print(f"run {k + 1}: {wall:.2f} s end to end (Ken Burns warps {gen:.2f} s, shots incl. fitting "
                  f"and shot files {render:.2f} s, tour encoding {run.data['timings']['encode_tour']:.2f} s)")
    print(f"median: {statistics.median(times):.2f} s for a {tour.duration:.0f}-second tour "
          f"({tour.duration / statistics.median(times):.2f}x real time)")


if __name__ == "__main__":
    main()
