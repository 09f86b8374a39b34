"""Regression tests for the outside attack run: each numbered section replays one attack.

1 the watermark key over HTTP · 2 concurrent first exports · 3 a foreign Host header ·
4 memory exhaustion from small requests · 5 two users' runs and files · 6 restart on the same
port after kill -9 · 7 CLI name collisions · 8 run state after ENOSPC and kill -9 · 9 cancel
through the API · 10 raw internal errors · 11 truncated PNG, EPS, login guessing · 12 study zip
packing paths from a cell's JSON. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import errno
import http.client as httpclient
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app as app_module
from core import exports, runs
from core.errors import ConfigError, InputError, OutOfDiskSpace
from core.service import JobRequest, Studio, StudioSettings
from tests.dashboard import free_port, running_dashboard
from tests.test_security import http, photo_file, run_app

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 96, "height": 64, "num_frames": 8}


def photo(h=80, w=120, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def studio(tmp_path) -> Studio:
    return Studio(StudioSettings(outputs=tmp_path / "outputs", device="cpu", models=tmp_path / "none.json"))


def raw_get(port: int, path: str, host: str) -> tuple[int, bytes]:
    """GET with an exact Host header (urllib would put the URL's own)."""
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# -- 1 the watermark key is never served ---------------------------------------------------------

def test_1_watermark_key_cannot_be_downloaded(live_server):
    outputs = live_server["outputs"]
    key = exports.installation_key(outputs)
    path = exports.key_path(outputs)
    assert not path.is_relative_to(outputs.resolve()) and not (outputs / exports.KEY_FILE).exists()
    assert os.stat(path).st_mode & 0o077 == 0 and os.stat(path.parent).st_mode & 0o077 == 0
    for target in (path, outputs / exports.KEY_FILE, outputs / ".." / path.parent.name / path.name):
        code, body = http(live_server["url"] + "gradio_api/file=" + str(target))
        assert code in (403, 404), (target, code)
        assert key.hex().encode() not in body


def test_1_a_legacy_key_inside_outputs_is_moved_out(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    old = bytes(range(32))
    (outputs / exports.KEY_FILE).write_text(old.hex() + "\n")
    assert exports.installation_key(outputs) == old  # marks made with it still verify
    assert not (outputs / exports.KEY_FILE).exists() and exports.key_path(outputs).is_file()


# -- 2 two first exports at once share one key -----------------------------------------------------

def test_2_concurrent_first_exports_get_the_same_key(tmp_path):
    outputs = tmp_path / "outputs"
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def first_export():
        barrier.wait()
        keys.append(exports.installation_key(outputs))

    threads = [threading.Thread(target=first_export) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    frames = photo(320, 512)[None].repeat(4, 0)
    marked = exports.embed(frames, "run", keys[0])
    assert exports.detect(marked, exports.installation_key(outputs)).detected  # every creator's mark is found
    assert not [p for p in exports.key_path(outputs).parent.iterdir() if p.name.endswith(".tmp")]


# -- 3 Host allow-list ---------------------------------------------------------------------------------

def test_3_foreign_host_header_is_refused(live_server):
    port = live_server["port"]
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io", ""):
        code, body = raw_get(port, "/config", host)
        assert code == 400, (host, code)
        assert b"Host not allowed" in body and b"components" not in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "LOCALHOST:8000"):
        code, _ = raw_get(port, "/config", host)
        assert code == 200, (host, code)


def test_3_host_policy_names():
    from ui.guard import HostPolicy

    p = HostPolicy.build("10.1.2.3", "https://studio.example.org/app", ["gcn25", " "])
    assert all(p.allows(h) for h in ("10.1.2.3:7860", "studio.example.org", "GCN25:7860", "127.0.0.7"))
    assert not any(p.allows(h) for h in ("evil.example", "studio.example.org.evil", "gcn26", None))
    assert HostPolicy.build(share=True).allows("abc.gradio.live")
    assert not HostPolicy.build().allows("abc.gradio.live")


# -- 4 memory caps -------------------------------------------------------------------------------------

def _bomb_mp4(path: Path) -> Path:
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(path), (2048, 2048), fps=8, codec="libx264", macro_block_size=1,
                                    quality=None, output_params=["-crf", "51", "-preset", "ultrafast"])
    w.send(None)
    frame = np.zeros((2048, 2048, 3), np.uint8)
    for _ in range(64):
        w.send(frame)
    w.close()
    return path


def test_4_huge_video_is_refused_from_its_header_with_little_memory(tmp_path):
    video = _bomb_mp4(tmp_path / "bomb.mp4")
    assert video.stat().st_size < 100_000
    script = (
        "import resource, sys\n"
        "from core import exports\n"
        "from core.errors import InputError\n"
        "import imageio.v2, numpy\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    exports.detect_file({str(video)!r}, b'k' * 32)\n"
        "    print('DECODED')\n"
        "except InputError as exc:\n"
        "    print('REFUSED', exc)\n"
        "print('GROWTH_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "REFUSED" in r.stdout and "2048x2048" in r.stdout, r.stdout + r.stderr
    growth_mb = int(r.stdout.split("GROWTH_KB")[1]) / 1024
    assert growth_mb < 300, growth_mb


def test_4_chain_stages_and_output_size_are_capped_before_running(studio):
    image = photo()
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="at most 4"):
        list(studio.run_job(JobRequest(image, chains=("lanczos+" * 50 + "lanczos",))))
    with pytest.raises(InputError, match=r"lanczos\+lanczos.*8192x5120"):
        list(studio.run_job(JobRequest(image, chains=("none", "lanczos+lanczos"))))
    with pytest.raises(InputError, match="limit"):
        list(studio.run_job(JobRequest(image, params={"width": 4096, "height": 4096, "num_frames": 1024})))
    assert time.perf_counter() - t0 < 5
    assert studio.list_runs() == []  # refused before a run (or the GPU queue) was taken


def test_4_keyframe_rows_are_bounded(studio):
    from core.service import CameraSpec
    from ui.app import _rows_to_keyframes

    rows = [[i / 10**6, 0, 0, 0, 0, 0, 0] for i in range(10**6)]
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="at most 256"):
        _rows_to_keyframes(rows)
    kfs = tuple({"time": i / 999, "position": [0, 0, 0]} for i in range(1000))
    with pytest.raises(InputError, match="at most 256"):
        studio.camera_path(CameraSpec(mode="keyframes", keyframes=kfs))
    assert time.perf_counter() - t0 < 2


# -- 5 per-user runs -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_users(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-users")
    users = root / "users"
    users.write_text("alice:alice password\nbob:bob password\n")
    users.chmod(0o600)
    with running_dashboard(root, "--auth", str(users), "--models", str(root / "none.json")) as server:
        yield server


def test_5_users_cannot_see_each_others_runs_or_files(two_users, tmp_path):
    from gradio_client import Client, handle_file

    url = two_users["url"]
    out = Client(url, verbose=False, auth=("alice", "alice password")).predict(handle_file(str(photo_file(tmp_path / "p.png"))), "kenburns", "push-in", ["none"], 0,
                        "alice's secret prompt", SMALL, api_name="/walkthrough")
    video = Path(out["chains"]["none"]["video"])
    assert video.is_file() and "users" in video.parts

    def login(user: str, password: str):
        import http.cookiejar
        import urllib.parse
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = urllib.parse.urlencode({"username": user, "password": password}).encode()
        assert opener.open(url + "login", form, timeout=30).status == 200
        return opener

    def fetch(opener, path) -> int:
        import urllib.error

        try:
            return opener.open(url + "gradio_api/file=" + str(path), timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code

    alice, bob = login("alice", "alice password"), login("bob", "bob password")
    assert fetch(alice, video) == 200
    assert fetch(bob, video) == 403
    assert fetch(bob, video.parent / "run.json") == 403
    import urllib.parse

    assert fetch(bob, urllib.parse.quote(str(video))) == 403  # percent-encoded
    assert fetch(bob, str(video).replace("/users/", "/users/./../users/")) in (403, 404)  # dot segments
    # the Runs tab and the export panel go through the service with the request's user
    studio = Studio(StudioSettings(outputs=two_users["outputs"], device="cpu", per_user_runs=True,
                                   models=two_users["root"] / "none.json"))
    assert [r.id for r in studio.list_runs(user="alice")] == [out["run_id"]]
    assert studio.list_runs(user="bob") == []
    with pytest.raises(InputError):
        studio.open_run(out["run_id"], user="bob")
    shared = Studio(StudioSettings(outputs=two_users["outputs"], device="cpu", models=two_users["root"] / "none.json"))
    assert shared.runs_root("bob") == two_users["outputs"]  # --shared-runs: one team view


def test_5_user_folders_never_collide_or_escape():
    names = ["alice", "Alice", "../bob", "a/b", "é", "", "x" * 300]
    folders = [runs.user_folder(n) for n in names]
    assert len(set(folders)) == len(names)
    assert all("/" not in f and ".." not in f and len(f) < 50 for f in folders)


# -- 6 restart on the same port ------------------------------------------------------------------------

def test_6_restart_on_the_same_port_right_after_kill_9_with_a_client_connected(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True)\n"
        "c, _ = s.accept(); c.sendall(b'hello'); time.sleep(600)\n")], stdout=subprocess.PIPE)
    assert server.stdout.readline().strip() == b"up"
    client = socket.create_connection(("127.0.0.1", port))  # a browser tab keeping its connection
    assert client.recv(5) == b"hello"
    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    time.sleep(0.2)  # the kernel has closed the server side: FIN_WAIT with the client still open
    try:
        app_module.check_port("127.0.0.1", port)  # the pre-check must not refuse what the server allows
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    finally:
        client.close()
    with socket.socket() as s:  # and a port that is really in use is still refused
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(SystemExit, match="not free"):
            app_module.check_port("127.0.0.1", s.getsockname()[1])


@pytest.mark.slow
def test_6_dashboard_restarts_on_its_port_after_kill_9_with_a_browser_connected(tmp_path):
    """The whole reproduction with the real dashboard (two start-ups: opt-in with -m slow)."""
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    cmd = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--device", "cpu",
           "--outputs", str(tmp_path / "outputs"), "--models", str(tmp_path / "none.json")]

    def start():
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5).read(10)
                return proc
            except Exception:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode()[-2000:])
                time.sleep(0.3)
        proc.kill()
        raise AssertionError("the dashboard did not start")

    first = start()
    browser = socket.create_connection(("127.0.0.1", port))
    browser.sendall(f"GET /config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    browser.recv(100)
    first.kill()
    first.wait(10)
    try:
        second = start()
    finally:
        browser.close()
    second.terminate()
    second.wait(20)


# -- 7 CLI overwrite -------------------------------------------------------------------------------------

def test_7_cli_names_are_unique_and_results_are_never_replaced(tmp_path):
    from core.__main__ import _result_dir, _result_names

    photos = [tmp_path / n for n in ("room.jpg", "room.png", "a b.png", "a-b.png", "other.png")]
    names = _result_names(photos)
    assert len(set(names.values())) == len(photos)
    assert names[tmp_path / "other.png"] == "other"
    out = tmp_path / "out"
    first = _result_dir(out, "room", "push-in", b"photo one")
    first.mkdir(parents=True)
    (first / "run.json").write_text(json.dumps({"input": {"sha256": __import__("hashlib").sha256(b"photo one").hexdigest()}}))
    assert _result_dir(out, "room", "push-in", b"photo one") == first  # a re-run of the same photo
    assert _result_dir(out, "room", "push-in", b"photo two") != first  # another photo never replaces it


def test_7_cli_two_photos_with_one_stem(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    photo_file(folder / "room.jpg", 1)
    photo_file(folder / "room.png", 2)
    out = tmp_path / "out"
    from core.__main__ import main

    rc = main(["generate", "--image", str(folder), "--model", "kenburns", "--path", "push-in", "--chains", "none",
               "--out", str(out), "--param", "width=64", "--param", "height=48", "--param", "num_frames=4",
               "--device", "cpu", "--models", str(tmp_path / "none.json")])
    assert rc == 0
    results = sorted(p.parent.parent.name for p in out.glob("*/push-in/none.mp4"))
    assert len(results) == 2, results
    shas = {json.loads((out / n / "push-in" / "run.json").read_text())["input"]["sha256"] for n in results}
    assert len(shas) == 2


# -- 8 run state after a full disk and after kill -9 -------------------------------------------------------

def test_8_enospc_that_cannot_even_save_run_json_shows_failed(studio, monkeypatch):
    run = runs.Run.create(studio.settings.outputs)
    real = runs.atomic_write_json

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "atomic_write_json", full)
    run.fail(OutOfDiskSpace("The disk is full while writing chain-00.mp4."))
    assert json.loads((run.dir / "run.json").read_text())["status"] == "running"  # the file could not change
    listed = {r.id: r for r in studio.list_runs()}
    assert listed[run.id].status == "failed" and "disk is full" in listed[run.id].error
    assert studio.open_run(run.id).effective_status == "failed"
    monkeypatch.setattr(runs, "atomic_write_json", real)
    studio.list_runs()  # space is back: the failure is written
    assert json.loads((run.dir / "run.json").read_text())["status"] == "failed"


def test_8_after_kill_9_temporaries_go_and_the_run_is_labelled_interrupted(tmp_path):
    outputs = tmp_path / "outputs"
    child = subprocess.run([sys.executable, "-c", (
        "import os, signal\n"
        "from core.runs import Run\n"
        f"run = Run.create({str(outputs)!r})\n"
        "(run.dir / '.chain-00.0123abcd.part.mp4').write_bytes(b'half')\n"
        "(run.dir / '.chain-00-frames.89abcdef.part').mkdir()\n"
        "print(run.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    run_id = child.stdout.strip()
    run_dir = outputs / run_id
    assert (run_dir / ".chain-00.0123abcd.part.mp4").exists()
    live = runs.Run.create(outputs)  # a run of this (live) process keeps its temporaries
    (live.dir / ".x.fedcba98.part.mp4").write_bytes(b"in progress")
    studio = Studio(StudioSettings(outputs=outputs, device="cpu", models=tmp_path / "none.json"))
    assert not [p.name for p in run_dir.iterdir() if ".part" in p.name]
    assert (live.dir / ".x.fedcba98.part.mp4").exists()
    assert studio.open_run(run_id).effective_status == "interrupted"  # "Show in Create" label


# -- 9 cancel through the API ---------------------------------------------------------------------------------

def test_9_cancelling_walkthrough_through_gradio_client_stops_the_job(live_server, tmp_path):
    from gradio_client import Client, handle_file

    outputs = live_server["outputs"]
    before = set(p.name for p in outputs.iterdir()) if outputs.exists() else set()
    client = Client(live_server["url"], verbose=False)
    job = client.submit(handle_file(str(photo_file(tmp_path / "p.png"))), "kenburns", "push-in",
                        ["none", "denoise", "denoise+upscale"], 0, "",
                        {"width": 512, "height": 320, "num_frames": 60}, api_name="/walkthrough")
    deadline = time.time() + 60
    new = set()
    while time.time() < deadline and not new:
        new = {p.name for p in outputs.iterdir() if p.name[:8].isdigit()} - before if outputs.exists() else set()
        time.sleep(0.2)
    assert new, "the job did not start"
    run_json = outputs / new.pop() / "run.json"
    job.cancel()
    deadline = time.time() + 60
    status = None
    while time.time() < deadline:
        status = json.loads(run_json.read_text())["status"]
        if status != "running":
            break
        time.sleep(0.3)
    assert status == "cancelled", status
    data = json.loads(run_json.read_text())
    assert "denoise+upscale" not in data["chains"] or not data["chains"]["denoise+upscale"].get("files")


def test_9_closing_the_generate_follower_is_quiet_and_leaves_the_job_running(studio, capsys):
    """/generate follows a server-owned job: a closed page (or a cancelled event) stops only the
    follower, quietly; the job ends on its own and `cancel` is the only way to stop it."""
    import gradio as gr

    from ui.app import build_ui

    demo, _ = build_ui(studio)
    fn = next(f for f in demo.fns.values() if f.api_name == "generate")
    data = {c: getattr(c, "value", None) for c in fn.inputs}
    photo_state = next(c for c in fn.inputs if isinstance(c, gr.State) and c.value is None)
    params = {c: v for c, v in data.items() if getattr(c, "label", None) in ("Width", "Height", "Frames")}
    data.update({photo_state: photo(), **{c: {"Width": 96, "Height": 64, "Frames": 8}[c.label] for c in params}})
    gen = fn.fn(data)
    first = next(gen)
    job = next(v for v in first.values() if isinstance(v, str) and v in {j.id for j in studio.active_jobs()})
    gen.close()  # what a cancelled or abandoned event does; must not raise or log an exception
    assert "Traceback" not in capsys.readouterr().err
    assert studio.wait_job(job, timeout=120).status == "complete"
    (run,) = studio.list_runs()
    assert run.status == "complete"


# -- 10 messages -------------------------------------------------------------------------------------------------

def test_10_malformed_api_arguments_are_one_line_input_errors(live_server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(live_server["url"], verbose=False)
    photo_arg = handle_file(str(photo_file(tmp_path / "p.png")))
    out = client.predict(photo_arg, "kenburns", "push-in", "none", 0, "", SMALL, api_name="/walkthrough")
    assert set(out["chains"]) == {"none"}  # a string is one chain, not the letters n, o, n, e
    for args, expected in (
        (("kenburns", "push-in", ["none"], 0, "", [1, 2]), "params must be an object"),
        (("kenburns", "push-in", [["none"]], 0, "", {}), "chains must be a list"),
        (("kenburns", "push-in", ["none"], 0, "", {}, "far"), "amount must be a number"),
    ):
        with pytest.raises(Exception) as exc:
            client.predict(photo_arg, *args, api_name="/walkthrough")
        assert expected in str(exc.value) and "Unexpected error" not in str(exc.value), str(exc.value)


def test_10_a_1x1_photo_is_refused_at_upload(studio, tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(InputError, match="too small"):
        studio.load_image(tmp_path / "dot.png")


def test_10_full_disk_on_camera_export_leaves_no_file(tmp_path, monkeypatch):
    from core import camera as cam

    path = cam.preset_path("push-in", num_frames=8)
    target = tmp_path / "camera.txt"
    real_open = open

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(file, mode="r", *a, **k):
        if "w" in mode and ".part" in str(file):
            real_open(file, mode, *a, **k).close()  # the temporary exists, as on a real disk
            return Full()
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(OutOfDiskSpace, match="disk is full"):
        path.save_realestate10k(target)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no 0-byte camera.txt, no temporary


def test_10_unwritable_outputs_and_corrupt_preload_are_one_line(tmp_path, capsys):
    from core.__main__ import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run_app("--outputs", str(blocker / "outputs"), "--port", str(free_port()))
    assert r.returncode != 0 and "not writable" in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    rc = main(["generate", "--image", str(photo_file(tmp_path / "p.png")), "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "not writable" in err and len(err.strip().splitlines()) == 1, err
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not a checkpoint at all")
    (tmp_path / "models.json").write_text(json.dumps({"models": {"fastdvdnet": {
        "kind": "denoiser", "variant": "fastdvdnet", "label": "FastDVDnet",
        "files": [{"role": "checkpoint", "path": str(ckpt)}]}}}))
    r = run_app("--models", str(tmp_path / "models.json"), "--preload", "fastdvdnet", "--device", "cpu",
                "--outputs", str(tmp_path / "out"), "--port", str(free_port()), timeout=180)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "model.pth" in r.stderr


def test_10_models_json_that_can_never_work_is_refused_at_load(tmp_path):
    from core.registry import Registry

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        Registry.load(deep)
    wrong_kind = tmp_path / "kind.json"
    wrong_kind.write_text(json.dumps({"models": {"kb": {"kind": "denoiser", "variant": "kenburns"}}}))
    with pytest.raises(ConfigError, match="'kb'.*kenburns"):
        Registry.load(wrong_kind)
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"models": {"kb": {"kind": "generator", "variant": "kenburns",
                                                  "defaults": {"width": 99999}}}}))
    s = Studio(StudioSettings(models=wide, outputs=tmp_path / "o", device="cpu"))
    assert any("'kb'" in m and "width" in m.lower() for m in s.startup_messages()), s.startup_messages()
    assert "kb" not in s.registry and "kenburns" in s.registry  # the built-ins still work


# -- 11 inputs and logins ------------------------------------------------------------------------------------------

def _half_png(w=120, h=80) -> bytes:
    """A well-formed PNG (all chunks, CRCs and IEND) whose pixel data holds only half the rows."""
    a = photo(h, w)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h // 2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_11_truncated_png_and_eps_are_refused(studio):
    with pytest.raises(InputError, match="truncated"):
        studio.load_image(_half_png())
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, "PNG")
    assert studio.load_image(buf.getvalue()).shape == (80, 120, 3)  # the whole file still loads
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 120 80\nshowpage\n%%EOF\n"
    with pytest.raises(InputError, match="not an image"):
        studio.load_image(eps)


def test_11_repeated_login_failures_are_throttled():
    from ui.guard import ThrottledLogin

    now = [0.0]
    auth = ThrottledLogin([("alice", "right")], max_failures=5, lockout_s=60, clock=lambda: now[0])
    assert auth("alice", "right")
    for _ in range(5):
        assert not auth("alice", "wrong")
    assert not auth("alice", "right")  # locked: even the right password is refused
    now[0] += 61
    assert auth("alice", "right")
    for i in range(20):  # guessing across many user names locks everyone
        auth(f"user{i}", "guess")
    assert not auth("alice", "right")


def test_11_login_throttle_over_http(two_users):
    url = two_users["url"]
    codes = [http(url + "login", b"username=bob&password=nope", {"Content-Type": "application/x-www-form-urlencoded"})[0]
             for _ in range(5)]
    assert codes == [400] * 5
    code, _ = http(url + "login", b"username=bob&password=bob+password",
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 400  # locked out for a minute, right password or not
    code, _ = http(url + "login", b"username=alice&password=alice+password",
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 200  # another user is not locked out by bob's guesser


# -- 12 study zip ----------------------------------------------------------------------------------------------------

def test_12_study_zip_packs_only_files_inside_the_study(tmp_path):
    from core import study

    out = tmp_path / "study"
    (out / "cells").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (out / "cells" / "ok.json").write_text(json.dumps({"index": 0, "photo": "p", "path": "push-in", "chains": {
        "none": {"video": str(secret)}, "up": {"video": "../../secret.txt"}}}))
    (out / "cells" / "evil.json").write_text(json.dumps({"index": 1, "photo": "p", "path": "x", "chains": {}}))
    state = {"kind": "study", "runs": "/", "cells": {
        "0": {"status": "complete", "file": "cells/ok.json"},
        "1": {"status": "complete", "file": str(secret)},
        "2": {"status": "complete", "file": "../secret.txt"},
    }}
    (out / study.STATE_FILE).write_text(json.dumps(state))
    target = study.zip_study(out)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        assert "cells/ok.json" in names
        assert all(".." not in n and not n.startswith("/") for n in names)
        assert not any(zf.read(n) == b"outside" for n in names)
