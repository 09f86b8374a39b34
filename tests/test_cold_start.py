"""Cold start: building the dashboard, and what a page load runs, import no torch (torch loads when a
model runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: this test process has torch imported already.
BUILD = """
import json, sys, tempfile
from pathlib import Path
import app
from core.service import Studio, StudioSettings
from ui import build_ui

studio = Studio(StudioSettings(root=app.ROOT, models=app.ROOT / "models.json",
                               outputs=Path(tempfile.mkdtemp()), device="auto"))
after_studio = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
demo, _ = build_ui(studio)
after_ui = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
figures_at_build = sorted(m for m in sys.modules if m.startswith("plotly.graph_objs._"))
# what a page load runs: the runs and models tables, the chosen model's note and camera path
handlers = {f.name: f for f in demo.fns.values()}
for name in ("refresh_runs", "refresh_models", "model_changed", "update_camera"):
    fn = handlers[name]
    fn.fn(*[getattr(c, "value", None) for c in fn.inputs])
after_load = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print(json.dumps({"studio": after_studio, "ui": after_ui, "load": after_load, "device": studio.device,
                  "figures_at_build": figures_at_build,
                  "generators": [i.name for i in studio.model_infos("generator")]}))
"""


def test_building_the_dashboard_imports_no_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    r = subprocess.run([sys.executable, "-c", BUILD], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["studio"] == [], "constructing Studio imported torch"
    assert out["ui"] == [], f"building the UI imported {out['ui'][:3]}"
    assert out["load"] == [], "a page load imported torch"
    # the blank metric panels are drawn on page load, not built (plotly's figure classes) at start
    assert out["figures_at_build"] == [], out["figures_at_build"][:3]
    assert out["device"] in ("cpu", "cuda")
    assert "cami2v-512" in out["generators"]  # the CamI2V entries were listed (their prompts read) too


def _fake_torch(tmp_path, monkeypatch, version_text):
    from importlib.machinery import ModuleSpec

    from core import devices

    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "version.py").write_text(version_text)
    spec = ModuleSpec("torch", None, origin=str(pkg / "__init__.py"))
    monkeypatch.setattr(devices.importlib.util, "find_spec", lambda name: spec if name == "torch" else None)
    return devices


def test_torch_build_is_read_from_its_version_file(tmp_path, monkeypatch):
    head = "from typing import Optional\n__version__ = '2.13.0'\n"
    devices = _fake_torch(tmp_path, monkeypatch, head + "cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n")
    assert devices.torch_cuda_build() is True
    (tmp_path / "torch" / "version.py").write_text(head + "cuda: Optional[str] = None\nhip: Optional[str] = None\n")
    assert devices.torch_cuda_build() is False
    # a ROCm build (or a file this cannot read) is left to torch itself
    (tmp_path / "torch" / "version.py").write_text(head + "cuda: Optional[str] = None\nhip: Optional[str] = '6.2'\n")
    assert devices.torch_cuda_build() is None
    (tmp_path / "torch" / "version.py").write_text(head)
    assert devices.torch_cuda_build() is None
