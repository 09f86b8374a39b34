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
