"""Chain text is normalised in one place: every layer that names or parses a chain (the request
parsing, the stage lookup, the chain runner, study specs, tours) writes the same canonical name
and resolves the same stages. These tests fail as soon as one layer tokenises chain text its own way.
"""

from __future__ import annotations

import numpy as np
import pytest

from core import contracts
from core.clip import Clip
from core.errors import InputError
from core.postprocess import chains as chainlib
from core.study.spec import parse_chains as study_chains

MESSY = [" Denoise + UPSCALE ", "denoise++upscale", "upscale+ denoise+", "NONE", " ", "+", "Lanczos+nlmeans",
         "interpolate + denoise"]


def test_one_normaliser_serves_every_layer():
    assert contracts.chain_name is chainlib.chain_name
    assert chainlib.chain_name(" Denoise + UPSCALE ") == "denoise+upscale"
    assert chainlib.chain_name("denoise++upscale") == "denoise+upscale"
    assert chainlib.chain_name(" + ") == "none"


@pytest.mark.parametrize("text", MESSY)
def test_stages_do_not_depend_on_how_the_chain_is_written(text):
    name = chainlib.chain_name(text)
    assert chainlib.parse_chain(text) == chainlib.parse_chain(name)
    assert chainlib.chain_label(chainlib.parse_chain(text)) == chainlib.chain_label(chainlib.parse_chain(name))


def test_runner_request_and_study_write_the_same_names():
    texts = [t for t in MESSY if chainlib.chain_words(t)]  # the study drops blank items
    want = list(dict.fromkeys(chainlib.chain_name(t) for t in texts))
    assert contracts.normalise_chains(texts) == want
    assert list(study_chains(texts)) == want
    assert list(study_chains(",".join(texts))) == want
    plans = chainlib.plan_chains(texts)
    assert sorted(n for p in plans for n in p.names) == sorted(want)  # grouped by stages
    clip = Clip(np.zeros((2, 16, 16, 3), np.uint8), 8.0)
    assert list(chainlib.run_chains(clip, texts, {"lanczos": {"scale": 2}})) == want


def test_blank_chains_are_refused_alike():
    with pytest.raises(InputError):
        contracts.normalise_chains([" + ", ","])
    with pytest.raises(InputError):
        study_chains([" + ", " "])
    with pytest.raises(InputError):
        study_chains(" + , ,")
