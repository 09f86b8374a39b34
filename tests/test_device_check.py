"""bench/device_check: the CPU tiny mode runs every section's code path and reports the JSON the
CUDA run reports; without CUDA the full check skips cleanly."""

from __future__ import annotations

import json

import pytest
import torch

from bench import device_check

SECTIONS = ("golden_cami2v512", "precision_cami2v512", "sdpa_backends", "generate_eager", "golden_fastdvdnet",
            "fastdvdnet", "golden_rife", "golden_uav", "uav_x4", "generate_compiled")


def test_without_cuda_the_full_check_skips_cleanly(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_tiny_mode_passes_and_reports_every_section(tmp_path, capsys):
    out = tmp_path / "report.json"
    threads = torch.get_num_threads()
    try:
        # torch.compile's tracing alone takes a minute on a loaded 2-core runner: skipped here
        # (the command itself runs it, with the "eager" backend in tiny mode).
        code = device_check.main(["--tiny", "--out", str(out), "--skip", "generate_compiled"])
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert code == 0 and report["ok"] is True and report["tiny"] is True
    assert report["device"]["type"] == "cpu"
    s = report["sections"]
    assert tuple(s) == SECTIONS and s["generate_compiled"]["skipped"] == "--skip"
    for name in ("golden_cami2v512", "golden_fastdvdnet", "golden_rife", "golden_uav"):
        for case, entry in s[name].items():
            if isinstance(entry, dict):
                assert entry["ok"] and entry["rel_err"] <= entry["tol"], (name, case)
    for dtype in ("bf16", "fp16"):  # half precision is compared against fp32, and differs from it
        assert 0 < s["precision_cami2v512"][dtype]["rel_err"] < 0.1
    assert s["sdpa_backends"]["fp32"] and all("scaled_dot_product" in k for k in s["sdpa_backends"]["fp32"])
    gen = s["generate_eager"]
    assert gen["steps"] == 2 and gen["seconds"] > 0 and gen["peak_gib"] > 0 and gen["ok"]
    assert s["uav_x4"]["ok"] and s["uav_x4"]["size_out"] == "160x96"
