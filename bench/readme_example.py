"""Wall time of the README's command-line example, exactly as written there, and where it goes.

Run from the repository root:  python -m bench.readme_example [--image PHOTO] [--keep DIR]

Runs ``python -m core generate --image PHOTO --model kenburns --path push-in,pan-left --chains
none,denoise,upscale,denoise+upscale,upscale+denoise --out DIR --frames`` in a fresh process (so
start-up and imports count), then prints the total wall time and, from each run's run.json, the
generator's time, every post-processing stage run (reused prefixes marked) and the time spent
writing each chain (mp4, PNG frames, metrics). The target is under 60 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAINS = "none,denoise,upscale,denoise+upscale,upscale+denoise"
PATHS = "push-in,pan-left"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(REPO / "assets" / "examples" / "living_room.jpg"))
    ap.add_argument("--keep", default=None, help="write the results here instead of a temporary folder")
    args = ap.parse_args()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="readme-example-"))
    cmd = [sys.executable, "-m", "core", "generate", "--image", args.image, "--model", "kenburns",
           "--path", PATHS, "--chains", CHAINS, "--out", str(out), "--frames"]
    print("$", " ".join(cmd[1:]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        return r.returncode
    print(f"wall time: {wall:.1f} s on {os.cpu_count()} CPU(s) (target: under 60 s on 2 cores)")
    print(f"CPU time: {usage.ru_utime + usage.ru_stime:.1f} s (user+system); load average at the end: {load:.1f}"
          " (another job on the same cores stretches the wall time, not the CPU time)")
    for run_json in sorted(p for p in out.glob("*/*/run.json") if not p.parts[-3].startswith(".")):
        data = json.loads(run_json.read_text())
        t = data.get("timings", {})
        print(f"\n{run_json.parent.parent.name} / {run_json.parent.name}: generate {t.get('generate', 0):.2f} s, "
              f"post-processing {t.get('post_process', 0):.2f} s")
        for name, chain in data.get("chains", {}).items():
            stages = ", ".join(f"{s['stage']} {s['seconds']:.2f} s at {s['input_size'][0]}x{s['input_size'][1]}"
                               + (" (reused)" if s.get("reused") else "") for s in chain.get("stages", []))
            print(f"  {name:16s} write+measure {t.get('write ' + name, 0):5.2f} s" + (f" | {stages}" if stages else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
