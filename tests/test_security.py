"""Security defaults: loopback bind, --auth, refusal of exposed binds without auth, only the
outputs folder served, upload limits, and no user text (or client-sent path) ever used as a
server path. All traffic goes to 127.0.0.1; nothing is ever bound to another address."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app as app_module
from core.errors import ConfigError, InputError
from core.service import JobRequest, Studio, StudioSettings
from tests.dashboard import running_dashboard

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 96, "height": 64, "num_frames": 8}


def run_app(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def photo_file(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(path)
    return path


def http(url: str, data: bytes | None = None, headers: dict | None = None, timeout=30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call_api(base: str, api: str, data: list) -> tuple[str, object]:
    """POST a raw payload to /gradio_api/call/<api> (as any HTTP client could) and return the
    final event ("complete" or "error") and its data."""
    code, body = http(f"{base}gradio_api/call/{api}", json.dumps({"data": data}).encode(),
                      {"Content-Type": "application/json"})
    assert code == 200, (code, body[:300])
    event_id = json.loads(body)["event_id"]
    code, body = http(f"{base}gradio_api/call/{api}/{event_id}", timeout=120)
    event, payload = None, None
    for line in body.decode().splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            payload = json.loads(line.split(":", 1)[1])
    return event, payload


def run_dirs(outputs: Path) -> set[str]:
    return {p.name for p in outputs.iterdir() if p.name[:8].isdigit()} if outputs.exists() else set()


# -- start-up rules (no server) ------------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.7", False), ("gcn25", False),
    ("localhost.evil.example", False),
])
def test_is_loopback(host, loopback):
    assert app_module.is_loopback(host) is loopback


def _args(**kw) -> argparse.Namespace:
    return app_module.parse_args([f"--{k}={v}" if v is not True else f"--{k}" for k, v in kw.items()])


def test_defaults_are_loopback_no_share_and_exact_port():
    a = app_module.parse_args([])
    assert (a.host, a.port, a.share, a.insecure, a.auth) == ("127.0.0.1", 7860, False, False, None)
    app_module.check_security(a, None)  # loopback without auth is fine


@pytest.mark.parametrize("kw", [{"host": "0.0.0.0"}, {"host": "::"}, {"host": "gcn25"}, {"share": True}])
def test_exposed_without_auth_is_refused_unless_insecure(kw):
    with pytest.raises(SystemExit) as exc:
        app_module.check_security(_args(**kw), None)
    assert "refusing" in str(exc.value) and "--auth" in str(exc.value) and "--insecure" in str(exc.value)
    app_module.check_security(_args(**kw, insecure=True), None)
    app_module.check_security(_args(**kw), [("alice", "pw")])


def test_app_refuses_before_binding_anything():
    for args in (["--host", "0.0.0.0"], ["--host", "::"], ["--share"]):
        r = run_app(*args, "--port", "7999", timeout=30)
        assert r.returncode != 0 and "refusing" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_read_auth_forms(tmp_path, capsys):
    assert app_module.read_auth(None) is None
    assert app_module.read_auth("alice:s3cr:et") == [("alice", "s3cr:et")]  # the password may hold ':'
    f = tmp_path / "users"
    f.write_text("# who may log in\nalice:one\n\n  bob:two  \n")
    f.chmod(0o600)
    assert app_module.read_auth(str(f)) == [("alice", "one"), ("bob", "two")]
    assert "readable by other users" not in capsys.readouterr().err
    f.chmod(0o644)
    app_module.read_auth(str(f))
    err = capsys.readouterr().err
    assert "readable by other users" in err and f"chmod 600 {f}" in err
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(SystemExit, match="expected user:password"):
            app_module.read_auth(bad)
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(SystemExit, match="no user:password"):
        app_module.read_auth(str(empty))


# -- no user text becomes a path (service) -----------------------------------------------------

def test_names_from_users_never_reach_the_file_system(tmp_path):
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                   min_free_bytes=0, device="cpu"))
    img = np.asarray(Image.open(photo_file(tmp_path / "p.png")))
    for run_id in ("../none", "../../etc/passwd", "/etc", "20260101-000000-000000-abcdeg", ""):
        with pytest.raises(InputError, match="Not a run id"):
            studio.open_run(run_id)
    with pytest.raises(InputError):
        list(studio.run_job(JobRequest(img, params=SMALL, chains=("../../../tmp/x",))))
    with pytest.raises(ConfigError, match="no model named"):
        list(studio.run_job(JobRequest(img, model="../../models", params=SMALL)))
    events = list(studio.run_job(JobRequest(img, params=SMALL, image_name="../../../etc/cron.d/x.png",
                                            chains=("none",))))
    run = studio.open_run(events[0].run_id)
    assert sorted(p.name for p in run.dir.iterdir()) == ["camera.json", "chain-00.mp4", "input.png", "metrics.json",
                                                         "run.json"]
    assert run.data["input"]["original_name"] == "x.png"  # kept as data only
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [run.id]


def test_uploaded_file_accepts_only_gradio_uploads(tmp_path, monkeypatch):
    from gradio.data_classes import FileData

    from core.errors import StudioError
    from ui.app import safe_stem
    from ui.uploads import uploaded_file

    cache = tmp_path / "gradio"
    (cache / "abc").mkdir(parents=True)
    up = cache / "abc" / "room.png"
    up.write_bytes(b"x")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    assert uploaded_file(str(up), "photo") == up.resolve()
    assert uploaded_file({"path": str(up)}, "photo") == up.resolve()
    assert uploaded_file(FileData(path=str(up)), "photo") == up.resolve()
    (cache / "abc" / "link.png").symlink_to(tmp_path / "p.png")
    for bad in ("/etc/passwd", str(cache / ".." / "secret.png"), {"path": str(REPO / "models.json")},
                str(cache / "abc" / "link.png"), None, 42, {"url": "http://x"}):
        with pytest.raises(StudioError):
            uploaded_file(bad, "photo")
    assert safe_stem("../../etc/passwd") == "etc-passwd"
    assert safe_stem("push-in") == "push-in" and safe_stem("...") == "path" and "/" not in safe_stem("a/b\\c")


# -- the running dashboard ---------------------------------------------------------------------

def test_server_listens_on_loopback_only(live_server):
    import psutil

    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    for addr in others:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, live_server["port"])) != 0, f"the dashboard answers on {addr}"
    with socket.create_connection(("127.0.0.1", live_server["port"]), timeout=5):
        pass


def test_only_the_outputs_folder_is_served(live_server):
    base, root, outputs = live_server["url"], live_server["root"], live_server["outputs"]
    outputs.mkdir(parents=True, exist_ok=True)
    probe = outputs / "probe.txt"
    probe.write_text("visible")
    outside = root / "private.txt"
    outside.write_text("secret")
    (outputs / "escape.txt").unlink(missing_ok=True)
    (outputs / "escape.txt").symlink_to(outside)
    refused = [
        str(REPO / "models.json"), str(REPO / "app.py"), str(REPO / "core" / "service.py"), "/etc/passwd",
        str(root / "models.json"), str(root / "server.log"), str(outside), "models.json", "server.log",
        f"{outputs}/../private.txt", f"{outputs}/%2e%2e/private.txt", f"{outputs}/..%2fprivate.txt",
        str(outputs / "escape.txt"), str(next(root.glob("tiny-qwen2-vl/*.json"))),
    ]
    for route in ("gradio_api/file=", "file="):
        for path in refused:
            code, body = http(base + route + path)
            assert code in (403, 404), (route, path, code)
            assert b"secret" not in body
    assert http(base + "gradio_api/file=" + str(probe)) == (200, b"visible")  # the control: outputs are served


def test_upload_size_limit_is_enforced(live_server):
    code, body = http(live_server["url"] + "config")
    assert json.loads(body)["max_file_size"] == 50 * 1024**2
    boundary = "cami2vboundary"
    blob = b"\0" * (50 * 1024**2 + 1)
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
               f"Content-Type: image/png\r\n\r\n").encode() + blob + f"\r\n--{boundary}--\r\n".encode()
    code, body = http(live_server["url"] + "gradio_api/upload", payload,
                      {"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120)
    assert code == 413, (code, body[:200])
    small = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"ok.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * 1000 + f"\r\n--{boundary}--\r\n".encode()
    code, body = http(live_server["url"] + "gradio_api/upload", small,
                      {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 200, body[:200]


def test_a_client_cannot_make_the_server_read_its_own_files(live_server, tmp_path):
    base, outputs = live_server["url"], live_server["outputs"]
    private = photo_file(live_server["root"] / "someone-elses-photo.png", seed=3)
    before = run_dirs(outputs)
    rest = ["kenburns", "push-in", ["none"], 0, "", SMALL, -1.0, -1.0]
    for payload in ({"path": str(private)}, {"path": str(private), "meta": {"_type": "gradio.FileData"}},
                    str(private)):
        event, data = call_api(base, "walkthrough", [payload] + rest)
        assert event == "error", (payload, data)
    # gr.Image passes a bare {"path": ...} straight through; the handler must refuse it
    event, data = call_api(base, "load_photo", [{"path": str(private)}, "kenburns"])
    # no framing preview of the private file: the preview keeps its last state (an update without a value)
    assert event == "complete" and (data[1] is None or (isinstance(data[1], dict) and "value" not in data[1]
                                                        and data[1].get("__type__") == "update")), data
    assert run_dirs(outputs) == before
    # the same requests with a file this client really uploaded do work
    from gradio_client import Client, handle_file

    client = Client(base, verbose=False)
    out = client.predict(handle_file(str(photo_file(tmp_path / "mine.png"))), *rest[:6], api_name="/walkthrough")
    assert Path(out["chains"]["none"]["video"]).is_file()


def test_camera_export_name_cannot_escape_the_outputs_folder(live_server, tmp_path):
    from gradio_client import Client, handle_file

    from core import camera as cam

    evil = "../../../../" + str(live_server["root"]).lstrip("/") + "/pwned"
    text = cam.preset_path("slide-left", num_frames=16).renamed(evil).to_realestate10k()
    assert urllib.parse.quote(evil, safe="") in text
    f = tmp_path / "path.txt"
    f.write_text(text)
    kf = {"headers": ["time", "x", "y", "z", "yaw", "pitch", "roll"], "data": [[0, 0, 0, 0, 0, 0, 0]]}
    client = Client(live_server["url"], verbose=False, download_files=str(tmp_path / "dl"))
    got = client.predict("kenburns", "File", "push-in", 0.5, 1.0, "linear", kf, 1.0, handle_file(str(f)), 1.0,
                         api_name="/export_camera")
    assert Path(got).read_text().splitlines()[1:] == text.splitlines()[1:]
    exports = list((live_server["outputs"] / "camera-exports").rglob("*.txt"))
    assert exports and all(p.name.startswith("camera-") and ".." not in p.name for p in exports)
    assert not list(live_server["root"].rglob("pwned*"))
    # the file is named by its content: the same path again is the same file, never overwritten by another
    again = client.predict("kenburns", "File", "push-in", 0.5, 1.0, "linear", kf, 1.0, handle_file(str(f)), 1.0,
                           api_name="/export_camera")
    assert Path(again).read_text() == Path(got).read_text()
    names = [p.relative_to(live_server["outputs"]) for p in (live_server["outputs"] / "camera-exports").rglob("*.txt")]
    assert len(names) == len(set(names)) == len(exports)


def test_open_run_with_a_path_is_a_clear_error(live_server):
    for run_id in ("../../models.json", "/etc/passwd"):
        event, data = call_api(live_server["url"], "open_run", [run_id, "native"])
        # refused by the dropdown's choices, and by Run.open's id check behind it
        assert event == "error", data
        assert "Not a run id" in json.dumps(data) or "not in the list of choices" in json.dumps(data)


# -- --auth on a real server -------------------------------------------------------------------

def test_auth_is_required_when_given(tmp_path):
    from gradio_client import Client, handle_file

    users = tmp_path / "users"
    users.write_text("alice:correct horse battery\n")
    users.chmod(0o600)
    with running_dashboard(tmp_path, "--auth", str(users), "--models", str(tmp_path / "none.json")) as server:
        url, log = server["url"], server["log"]
        assert "readable by other users" not in log.read_text()
        for path in ("config", "gradio_api/info"):
            code, body = http(url + path)
            assert code == 401, (path, code)
        event_code, _ = http(url + "gradio_api/call/walkthrough", b'{"data": []}', {"Content-Type": "application/json"})
        assert event_code == 401
        with pytest.raises(Exception):
            Client(url, verbose=False, auth=("alice", "wrong"))
        client = Client(url, verbose=False, auth=("alice", "correct horse battery"))
        out = client.predict(handle_file(str(photo_file(tmp_path / "p.png"))), "kenburns", "push-in", ["none"], 0,
                             "", SMALL, api_name="/walkthrough")
        assert Path(out["chains"]["none"]["video"]).is_file()
