"""The shared checkpoint I/O (core.models.checkpoint): formats, the key verdict, strict assign."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.errors import CheckpointError, WeightsMissing
from core.models import checkpoint as ckpt


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in nn.Linear(3, 2).state_dict().items()}


@pytest.mark.parametrize("kind", ["safetensors", "raw", "state_dict", "module"])
def test_formats_read_the_same_tensors(tmp_path, kind):
    sd = _state()
    if kind == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save(sd if kind == "raw" else {kind: sd, "epoch": 1}, path)
    f = ckpt.open_checkpoint(path, normalise=lambda k: "lin." + k)
    assert f.shapes == {"lin.weight": (2, 3), "lin.bias": (2,)} and f.renamed
    assert f.wrapper == (kind if kind in ("state_dict", "module") else None)
    got = f.state_dict()
    assert all(torch.equal(got["lin." + k], v) for k, v in sd.items())


def test_verdict_names_missing_unexpected_and_wrong_shape():
    v = ckpt.compare_keys({"a": (1,), "b": (2, 2), "c": (3,)}, {"a": (1,), "b": (2, 3), "z": (4,)},
                          optional=lambda k: k == "opt")
    assert not v.ok and v.missing == ["c"] and v.unexpected == ["z"] and v.wrong_shape == ["b [2, 3] != [2, 2]"]
    assert v.describe() == "1 missing keys: c; 1 unexpected keys: z; 1 keys with the wrong shape: b [2, 3] != [2, 2]"
    assert ckpt.compare_keys({"a": (1,), "opt": (1,)}, {"a": (1,)}, optional=lambda k: k == "opt").ok
    many = ckpt.KeyVerdict(missing=[f"k{i}" for i in range(10)])
    assert many.describe(limit=3) == "10 missing keys: k0, k1, k2, ... (+7 more)"


def test_assign_strict_materialises_a_meta_module_and_refuses_mismatches():
    sd = _state()
    with torch.device("meta"):
        m = nn.Linear(3, 2)
    ckpt.assign_strict(m, sd, "w.pt")
    assert not m.weight.is_meta and torch.equal(m.weight, sd["weight"])
    with torch.device("meta"):
        m2 = nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"w\.pt: does not match Linear \(1 missing keys: bias; "
                                              r"1 keys with the wrong shape: weight \[2, 4\] != \[2, 3\]\)"):
        ckpt.assign_strict(m2, {"weight": torch.zeros(2, 4)}, "w.pt")


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(WeightsMissing, match="absent.pt"):
        ckpt.open_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(CheckpointError, match="truncated or corrupt.*fetch it again \\(run x\\)") as err:
        ckpt.open_checkpoint(junk, hint="run x")
    assert "\n" not in str(err.value)
    st = tmp_path / "cut.safetensors"
    save_file(_state(), str(st))
    st.write_bytes(st.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.open_checkpoint(st)
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="extension"):
        ckpt.open_checkpoint(tmp_path / "w.npz")
    torch.save(torch.zeros(2), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        ckpt.open_checkpoint(tmp_path / "t.pt")
