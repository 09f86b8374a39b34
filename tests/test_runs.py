"""core.runs: run folders, run.json, history listing, atomic writes and a full disk."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core import runs as R
from core.clip import Clip
from core.errors import Cancelled, InputError


def _png_bytes(w: int = 20, h: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _clip(t: int = 3) -> Clip:
    return Clip(np.random.default_rng(1).integers(0, 256, (t, 16, 24, 3), dtype=np.uint8), 8.0)


def _read(run: R.Run) -> dict:
    return json.loads((run.dir / "run.json").read_text())


def test_run_json_records_everything(tmp_path):
    run = R.Run.create(tmp_path / "outputs", params={"steps": 25, "prompt": "a kitchen"}, seeds={"generator": 123})
    assert R.RUN_ID_RE.match(run.id) and run.dir.parent == tmp_path / "outputs"
    data = _read(run)
    assert data["status"] == "running" and data["error"] is None and data["schema"] == 1
    assert data["params"] == {"steps": 25, "prompt": "a kitchen"} and data["seeds"] == {"generator": 123}

    png = _png_bytes()
    info = run.save_input_image(png, original_name="../../evil name.png")
    assert info["file"] == "input.png"  # fixed name; the upload's name is data only
    assert (run.dir / "input.png").read_bytes() == png
    assert info["sha256"] == hashlib.sha256(png).hexdigest() and (info["width"], info["height"]) == (20, 12)

    run.add_model("cami2v-512", weights={"cami2v_512.pt": "ab" * 32}, dtype="fp16")
    run.add_timing("generate", 12.5)
    run.add_chain("denoise", stages=[{"stage": "nlmeans", "seconds": 1.0}], metrics={"tpsnr": float("nan")})
    mp4 = run.write_chain_video("denoise", _clip())
    run.write_json("metrics", {"denoise": {"x": np.float32(1.5)}})
    run.finish()

    data = _read(run)
    assert data["status"] == "complete"
    assert data["models"]["cami2v-512"] == {"weights": {"cami2v_512.pt": "ab" * 32}, "dtype": "fp16"}
    assert data["timings"] == {"generate": 12.5}
    chain = data["chains"]["denoise"]
    assert chain["index"] == 0 and chain["files"] == {"mp4": "chain-00.mp4"} and mp4 == run.dir / "chain-00.mp4"
    assert chain["metrics"] == {"tpsnr": None}  # NaN stored as null: strict JSON
    assert data["files"]["chain-00.mp4"] == mp4.stat().st_size > 0
    assert json.loads((run.dir / "metrics.json").read_text()) == {"denoise": {"x": 1.5}}
    assert sorted(p.name for p in run.dir.iterdir()) == ["chain-00.mp4", "input.png", "metrics.json", "run.json"]


def test_array_input_is_stored_as_png(tmp_path):
    run = R.Run.create(tmp_path)
    arr = np.full((5, 7, 3), 200, np.uint8)
    info = run.save_input_image(arr)
    assert info["file"] == "input.png" and info["format"] == "PNG"
    assert np.array_equal(np.asarray(Image.open(run.dir / "input.png")), arr)
    with pytest.raises(InputError):
        run.save_input_image(b"not an image")


def test_listing_after_restart_newest_first_and_damaged_entries(tmp_path):
    made = []
    for i in range(3):
        with R.Run.create(tmp_path, params={"i": i}) as run:
            made.append(run.id)
    assert made == sorted(made)  # ids sort in creation order
    bad = R.Run.create(tmp_path)
    (bad.dir / "run.json").write_text('{"id": "truncated', encoding="utf-8")
    empty_id = R.new_run_id()
    (tmp_path / empty_id).mkdir()
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "notes.txt").write_text("x")

    listed = R.list_runs(tmp_path)  # re-read from disk, as after a restart
    assert [s.id for s in listed] == sorted([*made, bad.id, empty_id], reverse=True)
    by_id = {s.id: s for s in listed}
    assert by_id[bad.id].status == "damaged" and "damaged" in by_id[bad.id].error
    assert by_id[empty_id].status == "damaged" and by_id[empty_id].error == "no run.json"
    assert [by_id[i].status for i in made] == ["complete"] * 3
    assert by_id[made[1]].data["params"] == {"i": 1}
    json.dumps([s.to_dict() for s in listed])
    assert [s.id for s in R.list_runs(tmp_path, limit=2)] == [s.id for s in listed[:2]]
    assert R.list_runs(tmp_path / "nowhere") == []

    reopened = R.Run.open(tmp_path, made[0])
    assert reopened.data["params"] == {"i": 0} and reopened.status == "complete"
    with pytest.raises(InputError, match="Not a run id"):
        R.Run.open(tmp_path, "../etc")
    with pytest.raises(InputError, match="No run"):
        R.Run.open(tmp_path, R.new_run_id())


def test_failure_and_cancel_are_recorded(tmp_path):
    with pytest.raises(RuntimeError):
        with R.Run.create(tmp_path) as failed:
            failed.add_timing("generate", 1.0)
            raise RuntimeError("CUDA error: out of cheese\nsecond line")
    data = _read(failed)
    assert data["status"] == "failed" and data["error"] == "RuntimeError: CUDA error: out of cheese second line"
    assert data["timings"] == {"generate": 1.0}  # what finished before the failure is kept
    with pytest.raises(Cancelled):
        with R.Run.create(tmp_path) as cancelled:
            raise Cancelled("Cancelled by the user.")
    assert _read(cancelled)["status"] == "cancelled"


def test_dead_process_run_is_listed_as_interrupted(tmp_path):
    run = R.Run.create(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.data["pid"] = int(proc.stdout)  # a process that has exited
    run.save()
    assert R.list_runs(tmp_path)[0].status == "interrupted"
    run.data["pid"] = os.getpid()
    run.save()
    assert R.list_runs(tmp_path)[0].status == "running"


def test_low_disk_space_is_refused_before_writing(tmp_path):
    run = R.Run.create(tmp_path, free_space_fn=lambda p: 10**12)
    run.free_space_fn = lambda p: 50 * 1024**2  # 50 MB free, below the 256 MB margin
    with pytest.raises(R.OutOfDiskSpace, match="Not enough disk space.*50 MB free"):
        run.write_chain_video("upscale", _clip())
    assert not (run.dir / "chain-00.mp4").exists()
    with pytest.raises(R.OutOfDiskSpace):
        R.Run.create(tmp_path / "new", free_space_fn=lambda p: 0)
    assert R.check_free_space(tmp_path / "a" / "b", 10, min_free_bytes=0, free_space_fn=lambda p: 11) == 11


def test_enospc_while_writing_keeps_earlier_files(tmp_path, monkeypatch):
    run = R.Run.create(tmp_path)
    run.save_input_image(_png_bytes())
    first = run.write_chain_video("none", _clip())
    before = _read(run)
    size_before = first.stat().st_size

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(R.os, "fsync", full_disk)
    with pytest.raises(R.OutOfDiskSpace, match="disk is full while writing chain-01.mp4"):
        run.write_chain_video("denoise", _clip())
    with pytest.raises(R.OutOfDiskSpace, match="run.json"):
        run.update(status="complete")
    run.fail(R.OutOfDiskSpace("The disk is full."))  # must not raise even though saving fails
    monkeypatch.undo()

    assert not (run.dir / "chain-01.mp4").exists()
    assert first.stat().st_size == size_before
    assert _read(run)["files"] == before["files"]  # run.json is still the last complete version
    assert not [p for p in run.dir.iterdir() if p.name.startswith(".")]  # no temp files left
    run.save()  # the disk has space again: the in-memory record (failed) is written
    assert _read(run)["status"] == "failed"


def test_atomic_output_never_exposes_partial_files(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(ValueError):
        with R.atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            assert not target.exists() and tmp.parent == tmp_path and tmp.name.startswith(".")
            raise ValueError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    R.atomic_write_bytes(target, b"whole")
    assert target.read_bytes() == b"whole"
    with pytest.raises(ValueError, match="unknown output kind"):
        R.Run.create(tmp_path / "o").path("../../x")
