"""Start the real dashboard (`python app.py`) for a test, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_dashboard(root: Path, *args: str, timeout: float = 180) -> Iterator[dict]:
    """`app.py --port P --device cpu --outputs ROOT/outputs *args`, with its temp files and log in
    `root`. Yields {"url", "port", "outputs", "root", "log", "proc"}; stops the server on exit.
    Until the page answers, a server that exits or does not start in `timeout` raises with the log."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_TEMP_DIR": str(root / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--device", "cpu",
                                 "--outputs", str(root / "outputs"), *args],
                                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).read(100)
                    break
                except Exception:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError("the dashboard did not start:\n" + log_path.read_text()[-3000:])
                    time.sleep(0.3)
            yield {"url": url, "port": port, "outputs": root / "outputs", "root": root, "log": log_path,
                   "proc": proc}
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
