"""Cold start: seconds from `python app.py` to the first HTTP 200, against a one-textbox Gradio app.

    python -m bench.cold_start [--runs 3] [--device auto] [--baseline OTHER_CHECKOUT]

Each run starts both servers one after the other (paired, order alternating), on free ports, with
an empty outputs folder, and polls GET / every 50 ms until it answers 200. Prints the median of
each, the ratio dashboard / bare (target <= 1.2) and whether the dashboard process imported torch
(it should not: torch loads when a model runs). --baseline also times OTHER_CHECKOUT/app.py in
the same runs (e.g. the main branch, to see a change). Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE_APP = """
import sys
import gradio as gr
with gr.Blocks() as demo:
    gr.Textbox(label="text")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), ssr_mode=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_200(cmd: list[str], port: int, env: dict[str, str], cwd: Path, timeout: float = 300) -> float:
    """Seconds from starting `cmd` to the first 200 on http://127.0.0.1:port/ (the server is stopped)."""
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[1]} exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{cmd[1]} did not answer in {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def torch_imported_by_app(device: str, env: dict[str, str]) -> bool:
    """Whether building the dashboard (as app.py does, without serving) imports torch."""
    code = ("import sys, tempfile; from pathlib import Path; import app; "
            "from core.service import Studio, StudioSettings; from ui import build_ui; "
            f"build_ui(Studio(StudioSettings(root=app.ROOT, outputs=Path(tempfile.mkdtemp()), device={device!r}))); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return r.stdout.strip().endswith("True")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="paired runs (default 3)")
    ap.add_argument("--device", default="auto", help="the dashboard's --device (default auto, as a user starts it)")
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout whose app.py is timed too")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = root / "bare_app.py"
        bare.write_text(BARE_APP)
        env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(root / "gradio")}
        dash_s, bare_s, base_s = [], [], []
        for i in range(args.runs):
            def dash(repo: Path = REPO) -> float:
                port = free_port()
                benv = {**env, "PYTHONPATH": str(repo)}
                return time_to_200([sys.executable, str(repo / "app.py"), "--port", str(port), "--device",
                                    args.device, "--outputs", str(root / f"outputs{i}")], port, benv, repo)

            def plain() -> float:
                port = free_port()
                return time_to_200([sys.executable, str(bare), str(port)], port, env, root)

            if i % 2 == 0:  # alternate the order so a drift in machine load hits all alike
                d, b = dash(), plain()
                base = dash(args.baseline.resolve()) if args.baseline else None
            else:
                base = dash(args.baseline.resolve()) if args.baseline else None
                b, d = plain(), dash()
            dash_s.append(d)
            bare_s.append(b)
            extra = ""
            if base is not None:
                base_s.append(base)
                extra = f", baseline {base:.2f} s (ratio {base / b:.2f})"
            print(f"run {i + 1}: dashboard {d:.2f} s, bare gradio {b:.2f} s, ratio {d / b:.2f}{extra}", flush=True)
        torch_loaded = torch_imported_by_app(args.device, env)

    d, b = statistics.median(dash_s), statistics.median(bare_s)
    ratios = [x / y for x, y in zip(dash_s, bare_s)]
    print(f"\ntime to first HTTP 200, median of {args.runs} paired runs (CPUs: {os.cpu_count()}):")
    print(f"  python app.py        {d:6.2f} s")
    print(f"  one-textbox gradio   {b:6.2f} s")
    print(f"  ratio                {d / b:6.2f}  (median of paired ratios {statistics.median(ratios):.2f}; target <= 1.2)")
    if base_s:
        bm = statistics.median(base_s)
        print(f"  baseline app.py      {bm:6.2f} s  (ratio {bm / b:.2f}; {args.baseline})")
    print(f"  torch imported while the UI is built: {'yes' if torch_loaded else 'no'}")


if __name__ == "__main__":
    main()
