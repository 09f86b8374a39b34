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


def test_a_job_parses_each_chain_once_and_names_its_products_alike(tmp_path, monkeypatch):
    """The plan parses the chain texts once; the licence check, the stage lookup, the size check,
    the timeline and the runner take the parsed chains (a second parse could resolve roles
    differently)."""
    from core import jobplan
    from core.service import CameraSpec, JobRequest, Studio, StudioSettings

    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                   min_free_bytes=0))
    calls: list[str] = []
    real = chainlib.parse_chain
    monkeypatch.setattr(chainlib, "parse_chain", lambda text, *a, **kw: calls.append(text) or real(text, *a, **kw))
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    texts = ("None", " Denoise + upscale", "upscale+denoise", "lanczos + nlmeans")
    request = JobRequest(image, CameraSpec(preset="push-in"), params={"width": 64, "height": 48, "num_frames": 4},
                         chains=texts, stage_params={"lanczos": {"scale": 2}}, commercial_only=True)
    p = jobplan.plan(studio, request)
    assert calls == [chainlib.chain_name(t) for t in texts]  # once each, nothing re-parsed
    assert [(c.name, c.stages) for c in p.parsed] == [
        ("none", ()), ("denoise+upscale", ("nlmeans", "lanczos")), ("upscale+denoise", ("lanczos", "nlmeans")),
        ("lanczos+nlmeans", ("lanczos", "nlmeans"))]
    assert p.chains == [c.name for c in p.parsed] and p.post == p.parsed[1:]
    calls.clear()
    events = list(studio.run_job(request))
    assert calls == [chainlib.chain_name(t) for t in texts]  # the job parsed them once, in its plan
    assert [e.chain for e in events if e.chain] == p.chains
