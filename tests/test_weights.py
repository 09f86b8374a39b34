"""Weights: local files used as is, size / sha256 / git-blob checks, refusal of corrupt files,
offline and gated messages, resumable HTTP downloads and hub downloads against a local server on
127.0.0.1 (plain http there: models.json itself only admits https URLs, so the tests pass the
scheme to the downloader instead of weakening the registry), and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import weights
from core.errors import CheckpointError, ConfigError, WeightsMissing
from core.registry import ModelEntry, Registry, WeightFile

COMMIT = "c0ffee" + "0" * 34
HELLO_BLOB = "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of b"hello\n"
EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# -- a local server: plain files with Range support, plus the few hub routes hf_hub uses -----------

class ServerState:
    def __init__(self):
        self.files: dict[str, bytes] = {}  # URL path -> content
        self.hub: dict[str, bytes] = {}  # repo file name -> content, served as repo "owner/repo"
        self.log: list[tuple[str, str, str | None]] = []
        self.truncate_next: int | None = None  # cut the next GET body after this many bytes
        self.ignore_range = False
        self.status: int | None = None  # answer everything with this status
        self.error_code: str | None = None  # X-Error-Code header (hub semantics, e.g. GatedRepo)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._handle(body=False)

    def do_GET(self):
        self._handle(body=True)

    def _send(self, code, data=b"", headers=(), body=True):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _handle(self, body):
        st: ServerState = self.server.state
        path = self.path.split("?")[0]
        st.log.append((self.command, path, self.headers.get("Range")))
        if st.status is not None:
            headers = [("X-Error-Code", st.error_code)] if st.error_code else []
            return self._send(st.status, b"", headers, body)
        if path.startswith("/api/models/owner/repo/tree/"):
            listing = [{"type": "file", "path": k, "size": len(v), "oid": hashlib.sha1(v).hexdigest()}
                       for k, v in st.hub.items()]
            return self._send(200, json.dumps(listing).encode(), [("Content-Type", "application/json")], body)
        if path.startswith("/api/models/owner/repo/revision/"):
            info = {"id": "owner/repo", "sha": COMMIT, "siblings": [{"rfilename": k} for k in st.hub]}
            return self._send(200, json.dumps(info).encode(), [("Content-Type", "application/json")], body)
        data = None
        if path.startswith("/owner/repo/resolve/"):
            name = path.split("/", 5)[5]
            data = st.hub.get(name)
            extra = [("X-Repo-Commit", COMMIT), ("ETag", f'"{hashlib.sha1(data or b"").hexdigest()}"')]
        else:
            data = st.files.get(path)
            extra = []
        if data is None:
            return self._send(404, b"", [("X-Error-Code", "EntryNotFound")], body)
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range and self.command == "GET":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._send(416, b"", [("Content-Range", f"bytes */{len(data)}")], body)
        chunk = data[start:]
        self.send_response(206 if start else 200)
        for k, v in extra:
            self.send_header(k, v)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if not body:
            return
        if st.truncate_next is not None:
            cut, st.truncate_next = st.truncate_next, None
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.state = ServerState()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_port}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def online(monkeypatch):
    """Leave offline mode (conftest turns it on) for tests that talk to the local server."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def registry(tmp_path: Path, files: list[dict], name: str = "demo") -> Registry:
    return Registry.from_dict({"schema": 1, "models": {name: {"kind": "denoiser", "variant": "demo",
                                                               "label": "Demo model", "files": files}}},
                              root=tmp_path)


def direct_registry(tmp_path: Path, *files: WeightFile, name: str = "demo") -> Registry:
    """A registry built without models.json parsing, for http:// test URLs."""
    return Registry([ModelEntry(name=name, kind="denoiser", variant="demo", label="Demo model", files=files)],
                    root=tmp_path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = bytes(range(256)) * 1200  # 300 KiB


# -- checksums and local files ----------------------------------------------------------------

def test_digests(tmp_path):
    p = tmp_path / "hello.txt"
    p.write_bytes(b"hello\n")
    assert weights.git_blob_id(p) == HELLO_BLOB
    assert weights.sha256_file(p) == sha(b"hello\n")
    (tmp_path / "empty").write_bytes(b"")
    assert weights.git_blob_id(tmp_path / "empty") == EMPTY_BLOB


def test_local_file_is_used_as_is(tmp_path, offline):
    f = tmp_path / "ckpts" / "model.pt"
    f.parent.mkdir()
    f.write_bytes(b"hello\n")
    before = f.stat().st_mtime_ns
    reg = registry(tmp_path, [
        {"role": "checkpoint", "path": "ckpts/model.pt", "repo": "owner/repo", "filename": "model.pt",
         "sha256": sha(b"hello\n"), "size": 6, "git_blob": HELLO_BLOB},
        {"role": "extra", "path": str(tmp_path / "local.bin"), "manual": "copy it from the lab share"},
    ])
    (tmp_path / "local.bin").write_bytes(b"anything")
    reports = weights.fetch(reg, "demo")
    assert [(r.role, r.state) for r in reports] == [("checkpoint", "ok"), ("extra", "present")]
    assert f.stat().st_mtime_ns == before and f.read_bytes() == b"hello\n"
    assert not (tmp_path / "ckpts" / ".downloads").exists()


@pytest.mark.parametrize("field, value, word", [("sha256", "0" * 64, "sha256"), ("git_blob", "0" * 40, "git blob"),
                                                ("size", 7, "bytes")])
def test_mismatch_is_refused_and_moved_aside(tmp_path, offline, field, value, word):
    f = tmp_path / "model.pt"
    f.write_bytes(b"hello\n")
    reg = registry(tmp_path, [{"role": "checkpoint", "path": "model.pt", field: value,
                               "manual": "ask the authors for model.pt"}])
    with pytest.raises(CheckpointError) as err:
        weights.fetch(reg, "demo")
    msg = str(err.value)
    assert word in msg and "model.pt.corrupt" in msg and "ask the authors" in msg and "\n" not in msg
    assert not f.exists() and (tmp_path / "model.pt.corrupt").read_bytes() == b"hello\n"


def test_verify_reports_without_touching(tmp_path):
    (tmp_path / "good.bin").write_bytes(b"hello\n")
    (tmp_path / "bad.bin").write_bytes(b"hello!\n")
    reg = registry(tmp_path, [
        {"role": "a", "path": "good.bin", "git_blob": HELLO_BLOB, "size": 6},
        {"role": "b", "path": "bad.bin", "sha256": sha(b"hello\n"), "repo": "owner/repo", "filename": "bad.bin"},
        {"role": "c", "path": "gone.bin", "optional": True, "manual": "optional extra"},
        {"role": "d", "path": "plain.bin", "manual": "m"},
    ])
    (tmp_path / "plain.bin").write_bytes(b"x")
    states = {r.role: (r.state, r.detail) for r in weights.verify(reg, "demo")}
    assert states["a"] == ("ok", "matches size, git blob")
    assert states["b"][0] == "corrupt" and "sha256" in states["b"][1]
    assert states["c"][0] == "missing" and states["d"][0] == "present"
    assert (tmp_path / "bad.bin").exists()  # verify never moves anything
    with pytest.raises(CheckpointError, match="bad.bin.*fetch demo"):
        weights.raise_for_reports(reg.get("demo"), weights.verify(reg, "demo"))


def test_optional_file_that_cannot_be_fetched_does_not_block(tmp_path, offline):
    (tmp_path / "main.bin").write_bytes(b"hello\n")
    reg = registry(tmp_path, [
        {"role": "checkpoint", "path": "main.bin", "git_blob": HELLO_BLOB},
        {"role": "extra", "path": "extra.bin", "optional": True, "repo": "owner/repo", "filename": "extra.bin"},
    ])
    reports = weights.fetch(reg, "demo")
    assert [(r.role, r.state) for r in reports] == [("checkpoint", "ok"), ("extra", "missing")]
    assert "fetch demo" in reports[1].detail


# -- offline, gated, manual -------------------------------------------------------------------------

def test_offline_hub_file_gives_one_clear_line(tmp_path, offline):
    reg = registry(tmp_path, [{"role": "checkpoint", "path": "ckpts/512_cami2v.pt", "repo": "owner/repo",
                               "filename": "sub/512_cami2v.pt"}])
    with pytest.raises(WeightsMissing) as err:
        weights.fetch(reg, "demo")
    msg = str(err.value)
    assert "python -m core.weights fetch demo" in msg
    assert "https://huggingface.co/owner/repo/resolve/main/sub/512_cami2v.pt" in msg
    assert str(tmp_path / "ckpts" / "512_cami2v.pt") in msg
    assert "offline" in msg and "\n" not in msg
    assert not (tmp_path / "ckpts" / "512_cami2v.pt").exists()


def test_offline_snapshot_and_url(tmp_path, offline):
    reg = registry(tmp_path, [{"role": "model", "path": "pretrained_models/Qwen2-VL-2B-Instruct",
                               "repo": "Qwen/Qwen2-VL-2B-Instruct", "snapshot": True}])
    with pytest.raises(WeightsMissing) as err:
        weights.fetch(reg, "demo")
    msg = str(err.value)
    assert "fetch demo" in msg and "https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct" in msg
    assert str(tmp_path / "pretrained_models" / "Qwen2-VL-2B-Instruct") in msg

    reg = registry(tmp_path, [{"role": "checkpoint", "path": "w.pth", "url": "https://example.org/w.pth"}])
    with pytest.raises(WeightsMissing, match=r"fetch demo.*https://example.org/w.pth.*w.pth"):
        weights.fetch(reg, "demo")


def test_manual_only_file_prints_the_instructions(tmp_path, offline):
    reg = registry(tmp_path, [{"role": "checkpoint", "path": "ckpts/uav.pth",
                               "manual": "download upscale_a_video.pth from the authors' Google Drive"}])
    with pytest.raises(WeightsMissing, match="Google Drive") as err:
        weights.fetch(reg, "demo")
    assert str(tmp_path / "ckpts" / "uav.pth") in str(err.value)


# -- HTTP downloads ----------------------------------------------------------------------------

def test_download_resumes_with_range(tmp_path, server):
    server.state.files["/w.bin"] = PAYLOAD
    server.state.truncate_next = 100_000
    dest = tmp_path / "w.bin"
    with pytest.raises(weights.DownloadFailed, match="resume"):
        weights.download_url(server.url + "/w.bin", dest, allowed_schemes=("http",))
    part = tmp_path / "w.bin.part"
    assert part.stat().st_size == 100_000 and not dest.exists()

    seen = []
    weights.download_url(server.url + "/w.bin", dest, allowed_schemes=("http",),
                         on_bytes=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert server.state.log[-1] == ("GET", "/w.bin", "bytes=100000-")
    assert seen[0][0] > 100_000 and seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_download_restarts_when_the_server_ignores_range(tmp_path, server):
    server.state.files["/w.bin"] = PAYLOAD
    server.state.ignore_range = True
    (tmp_path / "w.bin.part").write_bytes(b"stale bytes from another file")
    weights.download_url(server.url + "/w.bin", tmp_path / "w.bin", allowed_schemes=("http",))
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_complete_part_is_finished_without_refetching(tmp_path, server):
    server.state.files["/w.bin"] = PAYLOAD
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD)
    weights.download_url(server.url + "/w.bin", tmp_path / "w.bin", allowed_schemes=("http",))  # 416 answer
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD
    (tmp_path / "w2.bin.part").write_bytes(PAYLOAD)
    n = len(server.state.log)
    weights.download_url(server.url + "/w.bin", tmp_path / "w2.bin", expected_size=len(PAYLOAD),
                         allowed_schemes=("http",))
    assert len(server.state.log) == n  # size known and reached: no request at all


def test_https_only_by_default(tmp_path, server):
    with pytest.raises(ConfigError, match="https://"):
        weights.download_url(server.url + "/w.bin", tmp_path / "w.bin")
    assert server.state.log == []
    with pytest.raises(ConfigError, match="https://"):
        registry(tmp_path, [{"role": "c", "path": "w.bin", "url": server.url + "/w.bin"}])


def test_fetch_url_verifies_and_reports_progress(tmp_path, server, online):
    server.state.files["/ckpt.pth"] = PAYLOAD
    wf = WeightFile(role="checkpoint", path="ckpts/ckpt.pth", url=server.url + "/ckpt.pth", sha256=sha(PAYLOAD),
                    size=len(PAYLOAD))
    reg = direct_registry(tmp_path, wf)
    fractions = []
    reports = weights.fetch(reg, "demo", progress=lambda f, m: fractions.append(f), url_schemes=("https", "http"))
    assert reports[0].state == "fetched"
    assert (tmp_path / "ckpts" / "ckpt.pth").read_bytes() == PAYLOAD
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 2
    n = len(server.state.log)
    assert weights.fetch(reg, "demo", url_schemes=("https", "http"))[0].state == "ok"
    assert len(server.state.log) == n  # present and verified: nothing downloaded


def test_fetch_url_refuses_a_bad_download(tmp_path, server, online):
    server.state.files["/ckpt.pth"] = PAYLOAD
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="ckpt.pth", url=server.url + "/ckpt.pth",
                                               sha256="0" * 64))
    with pytest.raises(CheckpointError, match="sha256.*ckpt.pth.corrupt"):
        weights.fetch(reg, "demo", url_schemes=("https", "http"))
    assert not (tmp_path / "ckpt.pth").exists() and not (tmp_path / "ckpt.pth.part").exists()
    assert (tmp_path / "ckpt.pth.corrupt").read_bytes() == PAYLOAD


def test_cancel_keeps_the_partial_download(tmp_path, server, online):
    from core.errors import Cancelled
    from core.progress import Progress

    server.state.files["/big.pth"] = PAYLOAD * 8  # several chunks
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="big.pth", url=server.url + "/big.pth"))
    cancel = threading.Event()

    def on_progress(frac, msg):
        if frac > 0.2:
            cancel.set()

    with pytest.raises(Cancelled):
        weights.fetch(reg, "demo", progress=Progress(on_progress, cancel), url_schemes=("https", "http"))
    part = tmp_path / "big.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD) * 8 and not (tmp_path / "big.pth").exists()
    weights.fetch(reg, "demo", url_schemes=("https", "http"))  # resumes where it stopped
    assert (tmp_path / "big.pth").read_bytes() == PAYLOAD * 8
    assert server.state.log[-1] == ("GET", "/big.pth", f"bytes={kept}-")


def test_fetch_url_http_errors(tmp_path, server, online):
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="ckpt.pth", url=server.url + "/nope.pth"))
    with pytest.raises(WeightsMissing, match=r"HTTP 404.*outdated.*fetch demo.*nope.pth"):
        weights.fetch(reg, "demo", url_schemes=("https", "http"))
    server.state.status = 403
    with pytest.raises(WeightsMissing, match="access denied"):
        weights.fetch(reg, "demo", url_schemes=("https", "http"))


# -- the hub (huggingface_hub against the local server) ------------------------------------------

def test_hub_file_download_into_the_entry_path(tmp_path, server, online):
    server.state.hub["sub/weights.bin"] = PAYLOAD
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="ckpts/renamed.bin", repo="owner/repo",
                                               filename="sub/weights.bin", sha256=sha(PAYLOAD)))
    fractions = []
    reports = weights.fetch(reg, "demo", progress=lambda f, m: fractions.append(f), endpoint=server.url)
    assert reports[0].state == "fetched"
    assert (tmp_path / "ckpts" / "renamed.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "ckpts" / ".downloads").exists()  # staging cleaned up
    assert fractions[-1] == 1.0


def test_corrupt_local_copy_is_replaced_from_its_source(tmp_path, server, online):
    server.state.hub["w.bin"] = PAYLOAD
    (tmp_path / "w.bin").write_bytes(b"truncated")
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="w.bin", repo="owner/repo",
                                               filename="w.bin", size=len(PAYLOAD)))
    assert weights.fetch(reg, "demo", endpoint=server.url)[0].state == "fetched"
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "w.bin.corrupt").read_bytes() == b"truncated"


def test_hub_checksum_mismatch_is_refused(tmp_path, server, online):
    server.state.hub["w.bin"] = PAYLOAD
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="w.bin", repo="owner/repo",
                                               filename="w.bin", git_blob="0" * 40))
    with pytest.raises(CheckpointError, match="git blob"):
        weights.fetch(reg, "demo", endpoint=server.url)
    assert (tmp_path / "w.bin.corrupt").read_bytes() == PAYLOAD and not (tmp_path / "w.bin").exists()


def test_hub_snapshot(tmp_path, server, online):
    server.state.hub["config.json"] = b'{"model_type": "demo"}'
    server.state.hub["sub/model.safetensors"] = PAYLOAD
    reg = direct_registry(tmp_path, WeightFile(role="model", path="pretrained_models/demo", repo="owner/repo",
                                               snapshot=True))
    assert weights.fetch(reg, "demo", endpoint=server.url)[0].state == "fetched"
    folder = tmp_path / "pretrained_models" / "demo"
    assert (folder / "sub" / "model.safetensors").read_bytes() == PAYLOAD
    assert weights.snapshot_complete(folder)
    n = len(server.state.log)
    assert weights.fetch(reg, "demo", endpoint=server.url)[0].state == "present"
    assert len(server.state.log) == n


def test_hub_snapshot_include_patterns(tmp_path, server, online):
    server.state.hub["model_index.json"] = b"{}"
    server.state.hub["unet/diffusion_pytorch_model.fp16.safetensors"] = PAYLOAD
    server.state.hub["unet/diffusion_pytorch_model.safetensors"] = PAYLOAD * 2
    server.state.hub["svd_xt.safetensors"] = PAYLOAD * 3
    reg = direct_registry(tmp_path, WeightFile(role="model", path="pretrained_models/demo", repo="owner/repo",
                                               snapshot=True, include=("model_index.json", "*/*.fp16.safetensors")))
    weights.fetch(reg, "demo", endpoint=server.url)
    folder = tmp_path / "pretrained_models" / "demo"
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts)
    assert got == ["model_index.json", "unet/diffusion_pytorch_model.fp16.safetensors"]


@pytest.mark.parametrize("status, error_code, words", [(401, None, "access denied"), (403, None, "access denied"),
                                                       (401, "GatedRepo", "gated")])
def test_hub_gated_or_private(tmp_path, server, online, status, error_code, words):
    server.state.status, server.state.error_code = status, error_code
    reg = direct_registry(tmp_path, WeightFile(role="checkpoint", path="w.bin", repo="owner/repo", filename="w.bin"))
    with pytest.raises(WeightsMissing) as err:
        weights.fetch(reg, "demo", endpoint=server.url)
    msg = str(err.value)
    assert words in msg and "HF_TOKEN" in msg and "fetch demo" in msg and str(tmp_path / "w.bin") in msg


# -- CLI ---------------------------------------------------------------------------------------------

def write_registry(tmp_path: Path) -> Path:
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "ok.bin").write_bytes(b"hello\n")
    (tmp_path / "ckpts" / "bad.bin").write_bytes(b"nope\n")
    data = {"schema": 1, "models": {
        "good": {"kind": "denoiser", "variant": "demo", "files": [
            {"role": "checkpoint", "path": "ckpts/ok.bin", "git_blob": HELLO_BLOB}]},
        "broken": {"kind": "upscaler", "variant": "demo", "files": [
            {"role": "checkpoint", "path": "ckpts/bad.bin", "sha256": sha(b"hello\n")}]},
        "absent": {"kind": "generator", "variant": "demo", "files": [
            {"role": "checkpoint", "path": "ckpts/absent.pt", "repo": "owner/repo", "filename": "absent.pt"}]},
    }}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    return path


def test_cli(tmp_path, capsys, offline):
    reg = write_registry(tmp_path)
    assert weights.main(["--registry", str(reg), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "KIND", "STATUS"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert "available" in rows["good"] and "weights missing" in rows["absent"]

    assert weights.main(["verify", "good", "--registry", str(reg)]) == 0
    assert weights.main(["verify", "broken", "--registry", str(reg)]) == CheckpointError.exit_code
    assert weights.main(["--registry", str(reg), "fetch", "absent"]) == WeightsMissing.exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: Cannot download absent.pt" in err and "fetch absent" in err
    assert weights.main(["--registry", str(reg), "fetch", "nosuch"]) == ConfigError.exit_code
    assert weights.main(["--registry", str(tmp_path / "missing.json"), "list"]) == ConfigError.exit_code
    assert "model registry not found" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path, repo_root):
    reg = write_registry(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo_root)}
    proc = subprocess.run([sys.executable, "-m", "core.weights", "--registry", str(reg), "fetch", "absent"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == WeightsMissing.exit_code
    assert proc.stderr.count("\n") == 1 and "python -m core.weights fetch absent" in proc.stderr
