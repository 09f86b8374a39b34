"""Shared fixtures. Tests that need the reference material in ../shared skip with a reason when
it is absent (a clone without the sibling folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAMI2V_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
GOLDEN = REFERENCE / "golden"
MANIFESTS = REFERENCE / "manifests"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference material not found at {path} (the ../shared folder beside the repo)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN)


@pytest.fixture(scope="session")
def manifests_dir() -> Path:
    return _need(MANIFESTS)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _need(REFERENCE)


# -- a live dashboard for the gradio_client, load and browser tests ------------------------------

@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The dashboard on a free loopback port with a test registry: the built-in models plus a
    tiny random Qwen2-VL captioner (built offline). Yields a dict with url, outputs, port, root."""
    import json

    from tests.dashboard import running_dashboard
    from tests.tiny_qwen import build_tiny_qwen2vl

    root = tmp_path_factory.mktemp("server")
    tiny = build_tiny_qwen2vl(root / "tiny-qwen2-vl")
    registry = {"schema": 1, "models": {
        "kenburns": {"kind": "generator", "variant": "kenburns", "label": "Ken Burns preview (no AI)"},
        "nlmeans": {"kind": "denoiser", "variant": "nlmeans", "label": "NL-means (OpenCV)"},
        "lanczos": {"kind": "upscaler", "variant": "lanczos", "label": "Lanczos (OpenCV)"},
        "tiny-qwen": {"kind": "captioner", "variant": "qwen2-vl", "label": "Tiny Qwen2-VL (test)",
                      "files": [{"role": "model", "path": str(tiny)}]},
    }}
    (root / "models.json").write_text(json.dumps(registry))
    with running_dashboard(root, "--models", str(root / "models.json")) as server:
        yield server


@pytest.fixture()
def torch_one_thread(request):
    """Tiny models are dominated by per-operation overhead: on a 2-core runner a second OpenMP
    thread only spins (several times slower wall time). Heavy tests keep every thread."""
    import torch

    if request.node.get_closest_marker("heavy"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
