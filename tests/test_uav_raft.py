"""RAFT-large and the bidirectional wrapper: manifest, key map, loader, resize quirk, golden flows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import CheckpointError, InputError
from core.models.upscale_a_video.loader import load_raft
from core.models.upscale_a_video.raft import (MIN_FLOW_SIZE, BidirectionalRAFT, build_raft,
                                              raft_key_to_upstream, raft_state_dict_from_upstream, resize_flow,
                                              window_length_for_width)
from core.models.weight_rule import fill_with_rule, rule_tensor


def _rule_raft():
    model = build_raft("cpu")  # buffers must be real: BatchNorm keeps its constructed 0 / 1 statistics
    fill_with_rule(model, raft_key_to_upstream)
    return model


@pytest.fixture(scope="module")
def raft():
    return _rule_raft()


def test_state_dict_matches_manifest(manifests_dir):
    manifest = json.loads((manifests_dir / "upscale_a_video_raft.json").read_text())
    model = build_raft()
    ours = [(raft_key_to_upstream(k), list(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in model.state_dict().items()]
    assert ours == [tuple(e) for e in manifest["entries"]]
    assert len(ours) == 179
    assert sum(p.numel() for p in model.parameters()) == manifest["total_params"]
    # every alias pair of the file is one tensor here
    sd = build_raft("cpu").state_dict()
    for first, second in manifest["alias_groups"]:
        a, b = sd[first[len("module."):]], sd[second[len("module."):]]
        assert a.data_ptr() == b.data_ptr()


def test_weight_rule_aliases_take_the_first_key(raft):
    norm = raft.cnet.layer2[0].norm3
    assert raft.cnet.layer2[0].downsample[1] is norm
    torch.testing.assert_close(norm.weight, rule_tensor("module.cnet.layer2.0.norm3.weight", (96,)))
    assert torch.equal(norm.running_var, torch.ones(96))


def test_resize_flow_reproduces_upstream_row_scaling():
    flow = torch.ones(1, 2, 128, 136)
    bug = resize_flow(flow, 124, 132, upstream_rescale_bug=True)
    fixed = resize_flow(flow, 124, 132, upstream_rescale_bug=False)
    # upstream: row 0 of both channels * 124/128, row 1 * 132/136, other rows untouched
    torch.testing.assert_close(bug[:, :, 0], torch.full((1, 2, 132), 124 / 128))
    torch.testing.assert_close(bug[:, :, 1], torch.full((1, 2, 132), 132 / 136))
    torch.testing.assert_close(bug[:, :, 2:], torch.ones(1, 2, 122, 132))
    # correct: x channel * 132/136, y channel * 124/128 everywhere
    torch.testing.assert_close(fixed[:, 0], torch.full((1, 124, 132), 132 / 136))
    torch.testing.assert_close(fixed[:, 1], torch.full((1, 124, 132), 124 / 128))


def test_window_lengths():
    assert [window_length_for_width(w) for w in (320, 640, 641, 720, 1280, 1281)] == [12, 12, 8, 8, 4, 2]


def test_small_or_short_inputs_raise(raft):
    bi = BidirectionalRAFT(raft)
    with pytest.raises(InputError, match=f"at least {MIN_FLOW_SIZE}x{MIN_FLOW_SIZE}"):
        bi(torch.zeros(1, 3, 2, MIN_FLOW_SIZE - 1, 200))
    with pytest.raises(InputError, match="at least 2 frames"):
        bi(torch.zeros(1, 3, 1, 128, 128))
    with pytest.raises(ValueError, match="divisible by 8"):
        raft(torch.zeros(1, 3, 130, 128), torch.zeros(1, 3, 130, 128))


def test_identical_frames_give_symmetric_flows(raft):
    frames = torch.rand(1, 3, 1, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fwd, bwd = BidirectionalRAFT(raft)(frames.expand(1, 3, 2, 128, 128), iters=2)
    assert fwd.shape == bwd.shape == (1, 2, 1, 128, 128)
    # identical inputs: forward and backward estimates are the same computation
    torch.testing.assert_close(fwd, bwd)


def test_slicing_covers_every_pair(raft):
    """14 frames at width <= 640 run as windows [0:12] and [11:14]; pairs are independent, so
    the sliced result equals one unsliced window."""
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 3, 14, 128, 128, generator=g) * 2 - 1
    bi = BidirectionalRAFT(raft)
    fwd, bwd = bi(frames, iters=1)
    ref_f, ref_b = bi.forward_window(frames, iters=1)
    assert fwd.shape == (1, 2, 13, 128, 128)
    torch.testing.assert_close(fwd, ref_f, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bwd, ref_b, rtol=1e-4, atol=1e-4)


# -- loading -------------------------------------------------------------------------------------

def test_load_round_trip_and_errors(tmp_path, raft):
    state = {raft_key_to_upstream(k): v.clone() for k, v in raft.state_dict().items()}
    state["module.cnet.norm1.running_mean"] = torch.full((64,), 0.5)
    torch.save(state, tmp_path / "raft-things.pth")
    loaded = load_raft(tmp_path / "raft-things.pth")
    assert torch.equal(loaded.cnet.norm1.running_mean, torch.full((64,), 0.5))
    torch.testing.assert_close(loaded.update_block.mask[2].weight, raft.update_block.mask[2].weight)
    assert loaded.cnet.layer3[0].downsample[1] is loaded.cnet.layer3[0].norm3

    # an old-style pickle without the prefix and without BatchNorm counters also loads
    legacy = {k[len("module."):]: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    load_raft(tmp_path / "legacy.pth")

    broken = dict(state)
    del broken["module.update_block.flow_head.conv2.bias"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing keys: update_block.flow_head.conv2.bias"):
        load_raft(tmp_path / "broken.pth")


def test_from_upstream_strips_prefix():
    out = raft_state_dict_from_upstream({"module.cnet.norm1.running_mean": torch.zeros(2)})
    assert set(out) == {"cnet.norm1.running_mean", "cnet.norm1.num_batches_tracked"}


# -- golden flows (release architecture, weight rule) ---------------------------------------------

@pytest.fixture(scope="module")
def golden(golden_dir):
    d = golden_dir / "upscale_a_video"
    return lambda name: torch.from_numpy(np.load(d / f"{name}.npy"))


def test_golden_flows_one_iteration(golden, raft):
    fwd, bwd = BidirectionalRAFT(raft).forward_window(golden("raft_in_frames"), iters=1)
    torch.testing.assert_close(fwd, golden("raft_out_flows_forward_iters1"), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bwd, golden("raft_out_flows_backward_iters1"), rtol=1e-4, atol=1e-4)


def test_golden_flows_twenty_iterations(golden, raft):
    frames = golden("raft_in_frames")  # (1, 3, 4, 124, 132): resized to 128x136 and back
    fwd, bwd = BidirectionalRAFT(raft)(frames)
    ref_f, ref_b = golden("raft_out_flows_forward"), golden("raft_out_flows_backward")
    # 20 recurrent steps amplify rounding ~200x and the random-weight flows reach |100| px
    torch.testing.assert_close(fwd, ref_f, rtol=0, atol=1e-2)
    torch.testing.assert_close(bwd, ref_b, rtol=0, atol=1e-2)
    # the correctly rescaled variant is a visibly different field (~3% of |flow|)
    fixed_f, _ = BidirectionalRAFT(raft, upstream_flow_rescale_bug=False)(frames)
    assert (fixed_f - ref_f).abs().max() > 1.0
