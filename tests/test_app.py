"""app.py start-up rules and the dashboard's API through gradio_client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def app(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_refuses_non_loopback_without_auth():
    r = app("--host", "0.0.0.0", "--port", "7999")
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0 without --auth" in r.stderr
    r = app("--share", "--port", "7999")
    assert r.returncode != 0 and "refusing --share without --auth" in r.stderr


def test_taken_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = app("--port", str(port))
    assert r.returncode != 0
    assert f"port {port} on 127.0.0.1 is not free" in r.stderr and "Traceback" not in r.stderr


def test_auth_file_format(tmp_path):
    f = tmp_path / "users"
    f.write_text("# users\nalice\n")
    r = app("--auth", str(f), "--port", "7999")
    assert r.returncode != 0 and "expected user:password" in r.stderr


def test_gradio_client_walkthrough(live_server, tmp_path):
    from gradio_client import Client, handle_file

    img = tmp_path / "room.png"
    Image.open(REPO / "assets" / "examples" / "bedroom.jpg").resize((200, 125)).save(img)
    client = Client(live_server["url"], verbose=False)
    out = client.predict(handle_file(str(img)), "kenburns", "slide-left", ["none", "upscale"], 7, "",
                         {"width": 128, "height": 80}, api_name="/walkthrough")
    assert set(out["chains"]) == {"none", "upscale"}
    assert out["chains"]["upscale"]["size"] == [512, 320]
    run_dir = live_server["outputs"] / out["run_id"]
    data = json.loads((run_dir / "run.json").read_text())
    assert data["status"] == "complete" and data["seeds"]["generator"] == 7
    assert Path(out["chains"]["none"]["video"]).is_file()


def test_only_outputs_are_served(live_server):
    secret = REPO / "models.json"
    for path in (str(secret), "/etc/passwd", str(live_server["root"] / "models.json")):
        url = live_server["url"] + "gradio_api/file=" + path
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(url, timeout=10)
        assert exc.value.code in (403, 404)
