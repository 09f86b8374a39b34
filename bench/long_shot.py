"""Long shots: CPU cost of what chaining adds around the model (joining, seam score, saving and
reloading segments), and the seam score of an ideal chained shot.

    python -m bench.long_shot [--frames 40] [--size 512x320] [--native 16] [--overlap 1]

The shot is a Ken Burns render of a procedural texture cut into segments the way a 16-frame model
would make it (so its joins are seamless and the seam scores show the measure's floor). The
model's own time per segment is whatever its benchmark says (bench/generate.py); chaining adds
the figures printed here. Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.adherence import textured_photo
from core.camera import extend_path, preset_path
from core.generators.kenburns import render_kenburns
from core.generators.segments import (SegmentStore, blend_segments, plan_segments, seam_report, segment_camera,
                                      segment_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="512x320")
    parser.add_argument("--native", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=1)
    parser.add_argument("--preset", default="slide-left")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    plan = plan_segments(args.frames, args.native, args.overlap)
    path = preset_path(args.preset, args.frames, amount=0.15)
    photo = textured_photo()
    # Each segment rendered from its own re-based camera, starting from the shot's frame at s_k:
    # the joins of this shot are exact, so its seam scores are the measure's noise floor.
    full, _ = render_kenburns(photo, extend_path(path, plan.covered), w, h, quality="fast")
    segments = [full[s:s + args.native] for s in plan.starts]
    t0 = time.perf_counter()
    for k in range(plan.count):
        segment_camera(path, plan, k)
    t_cam = time.perf_counter() - t0
    t0 = time.perf_counter()
    shot = blend_segments(segments, plan)
    t_blend = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    seams = seam_report(shot, plan)
    t_seam, c_seam = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory() as d:
        store = SegmentStore(d, "bench", plan, [segment_seed(0, k) for k in range(plan.count)])
        store.open()
        t0 = time.perf_counter()
        for k, seg in enumerate(segments):
            store.save(k, seg)
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(plan.count):
            store.load(k)
        t_load = time.perf_counter() - t0
        size = sum(store.path(k).stat().st_size for k in range(plan.count))
    print(f"shot: {args.frames} frames {w}x{h}, {plan.count} segments of {args.native} "
          f"(overlap {args.overlap}, starts {list(plan.starts)})")
    print(f"segment cameras (re-basing):  {t_cam * 1e3:8.1f} ms total")
    print(f"joining (cross-fade):         {t_blend * 1e3:8.1f} ms")
    print(f"seam score (DIS, {len(seams['joins'])} joins):    {t_seam * 1e3:8.1f} ms  (CPU time {c_seam * 1e3:.0f} ms)")
    print(f"saving segments (npz):        {t_save * 1e3:8.1f} ms  ({size / 2**20:.1f} MiB)")
    print(f"reloading segments (resume):  {t_load * 1e3:8.1f} ms")
    scores = ", ".join(f"{j['score']:.2f}" for j in seams["joins"])
    print(f"seam scores of an exact chain: {scores} (within-segment median {seams['within_median']:.2f} grey levels)")


if __name__ == "__main__":
    main()
