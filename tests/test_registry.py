"""models.json: typed parsing, one-line errors naming the entry and field, availability."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError, WeightsMissing
from core.registry import KINDS, Registry

REPO = Path(__file__).resolve().parents[1]


def reg(models, root=Path("/nonexistent")):
    return Registry.from_dict({"models": models}, root=root, source="models.json")


def test_shipped_registry_parses_and_covers_every_kind():
    r = Registry.load(REPO / "models.json")
    kinds = {e.kind for e in r}
    assert kinds == set(KINDS)
    names = {e.name for e in r}
    assert {"kenburns", "nlmeans", "lanczos", "fastdvdnet", "upscale-a-video", "cami2v-512", "cami2v-256",
            "cameractrl-256", "motionctrl-256", "svd", "svd-xt", "qwen2-vl-2b"} <= names
    for e in r:
        assert e.label and e.license, e.name
        for f in e.files:
            # every file either has an automatic source or says how to get it by hand
            assert f.repo or f.url or f.manual, (e.name, f.role)
            assert not Path(f.path).is_absolute(), (e.name, f.role)


@pytest.mark.parametrize("models, where", [
    ({"x": {"variant": "v"}}, "entry 'x', field 'kind': is required"),
    ({"x": {"kind": "painter", "variant": "v"}}, "entry 'x', field 'kind': must be one of"),
    ({"x": {"kind": "generator", "variant": 3}}, "entry 'x', field 'variant': must be a string"),
    ({"x": {"kind": "generator", "variant": "v", "needs_gpu": "yes"}}, "field 'needs_gpu': must be true or false"),
    ({"x": {"kind": "generator", "variant": "v", "colour": 1}}, "field 'colour': is not a known field"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a"}]}}, "field 'files[0].path': is required"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a", "path": "p", "sha256": "abc"}]}},
     "field 'files[0].sha256': must be 64"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a", "path": "p", "url": "http://x"}]}},
     "field 'files[0].url': must be an https:// URL"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a", "path": "p", "repo": "o/r"}]}},
     "field 'files[0].filename': is required with 'repo'"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a", "path": "p", "include": ["*"]}]}},
     "field 'files[0].include': must be a list of glob patterns, on a snapshot file"),
    ({"x": {"kind": "generator", "variant": "v", "files": [{"role": "a", "path": "p"}, {"role": "a", "path": "q"}]}},
     "field 'files[1].role': duplicate role"),
    ({"Bad Name": {"kind": "generator", "variant": "v"}}, "model name 'Bad Name'"),
])
def test_broken_entries_are_one_line(models, where):
    with pytest.raises(ConfigError) as err:
        reg(models)
    msg = str(err.value)
    assert where in msg and "\n" not in msg


def test_broken_files(tmp_path):
    p = tmp_path / "models.json"
    with pytest.raises(ConfigError, match="registry not found"):
        Registry.load(p)
    p.write_text('{"models": {"a": {,}}}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1, column 19"):
        Registry.load(p)
    p.write_text("[]")
    with pytest.raises(ConfigError, match="top level must be an object"):
        Registry.load(p)


def test_availability_reasons_and_missing_message(tmp_path):
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "here.pt").write_bytes(b"x")
    r = reg({
        "ok": {"kind": "denoiser", "variant": "v", "files": [{"role": "m", "path": "ckpts/here.pt"}]},
        "absent": {"kind": "generator", "variant": "v", "label": "Absent model",
                   "files": [{"role": "m", "path": "ckpts/absent.pt", "repo": "o/r", "filename": "absent.pt"},
                             {"role": "extra", "path": "ckpts/opt.pt", "optional": True}]},
        "manual": {"kind": "upscaler", "variant": "v", "label": "Manual model",
                   "files": [{"role": "m", "path": "ckpts/m.bin", "manual": "ask the authors"}]},
        "gpu": {"kind": "upscaler", "variant": "v", "needs_gpu": True},
        "pkg": {"kind": "captioner", "variant": "v", "requires": ["surely_not_a_module_xyz"]},
    }, root=tmp_path)
    assert r.availability("ok").available
    av = r.availability("absent")
    assert not av.available and av.reason == f"weights missing: {tmp_path / 'ckpts' / 'absent.pt'}"
    assert "CUDA GPU" in r.availability("gpu", has_gpu=False).reason
    assert r.availability("gpu", has_gpu=True).available
    assert "surely_not_a_module_xyz" in r.availability("pkg").reason
    with pytest.raises(WeightsMissing) as err:
        r.require_files("absent")
    msg = str(err.value)
    assert "absent.pt" in msg and "python -m core.weights fetch absent" in msg and str(tmp_path) in msg
    with pytest.raises(WeightsMissing, match="obtain it manually: ask the authors"):
        r.require_files("manual")
    with pytest.raises(ConfigError, match="no model named 'nope'"):
        r.get("nope")


def test_absolute_local_path_is_used_as_is(tmp_path):
    weights = tmp_path / "elsewhere" / "w.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"w")
    r = reg({"d": {"kind": "denoiser", "variant": "v", "files": [{"role": "m", "path": str(weights)}]}},
            root=tmp_path / "project")
    assert r.path("d", "m") == weights and r.availability("d").available
