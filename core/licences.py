"""Licences of the models a clip passes through, and the "commercial use only" rule.

Every registry entry carries `license` (an SPDX id or the licence's name), `commercial_use`
(one of COMMERCIAL_USE) and `license_url` (where the terms are). A clip's licences are those of
its generator and of every post-processing stage any of its chains ran; run.json and every
export record them (`licence_record`), with `commercial_use` of the whole run being the most
restrictive of its models ("no" < "unknown" < "conditions" < "yes").

"Commercial use only" admits a model when its `commercial_use` is "yes" or "conditions" (terms
that allow commercial use under stated conditions, e.g. a revenue threshold, which the user must
check); "no" and "unknown" are refused with the reason (a model whose weights state no licence
may not be assumed free to use).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .errors import InputError

COMMERCIAL_USE = ("yes", "conditions", "unknown", "no")
ALLOWED_FOR_COMMERCIAL = ("yes", "conditions")
# Most restrictive first: the whole clip is only as usable as its least usable model.
_ORDER = {"no": 0, "unknown": 1, "conditions": 2, "yes": 3}
_SAY = {
    "yes": "allows commercial use",
    "conditions": "allows commercial use under conditions (read its terms)",
    "unknown": "states no licence for its weights, so commercial use is not known to be allowed",
    "no": "does not allow commercial use",
}


def describe(commercial_use: str) -> str:
    """"allows commercial use", "does not allow commercial use", ... for one value."""
    return _SAY.get(commercial_use, _SAY["unknown"])


def allows_commercial(entry: Any) -> bool:
    """True when the entry's licence allows commercial use (possibly under conditions)."""
    return getattr(entry, "commercial_use", "unknown") in ALLOWED_FOR_COMMERCIAL


def refusal(entry: Any) -> str:
    """Why "commercial use only" refuses the entry (one line), or "" when it is allowed."""
    if allows_commercial(entry):
        return ""
    terms = f"; terms: {entry.license_url}" if getattr(entry, "license_url", "") else ""
    return (f"{entry.label} is excluded by \"commercial use only\": its licence "
            f"({entry.license or 'none stated'}) {describe(entry.commercial_use)}{terms}")


def check_commercial(registry: Any, names: Iterable[str]) -> None:
    """Raise InputError naming the first of `names` (registry entries) that commercial use
    refuses, with the reason; does nothing when all are allowed."""
    for name in dict.fromkeys(names):
        if name not in registry:
            continue  # an unknown name is refused with its own message where it is used
        why = refusal(registry.get(name))
        if why:
            raise InputError(why + ".")


def licence_of(entry: Any) -> dict[str, str]:
    """The licence fields of one registry entry, as recorded in run.json."""
    return {"label": entry.label, "license": entry.license, "commercial_use": entry.commercial_use,
            "license_url": entry.license_url}


def least(values: Iterable[str]) -> str:
    """The most restrictive of some commercial_use values ("yes" for none)."""
    vals = [v if v in _ORDER else "unknown" for v in values]
    return min(vals, key=_ORDER.__getitem__) if vals else "yes"


def licence_record(registry: Any, names: Iterable[str]) -> dict[str, Any]:
    """{"models": name -> licence fields, "commercial_use": the most restrictive, "summary": one
    line} for the registry entries in `names` (unknown names are skipped)."""
    models = {n: licence_of(registry.get(n)) for n in dict.fromkeys(names) if n in registry}
    overall = least(m["commercial_use"] for m in models.values())
    return {"models": models, "commercial_use": overall, "summary": summary(models, overall)}


def summary(models: Mapping[str, Mapping[str, str]], overall: str) -> str:
    """One line for people: what the clip may be used for, and which model decides it."""
    if not models:
        return "No model licences recorded."
    limiting = [m["label"] for m in models.values() if m["commercial_use"] == overall]
    if overall == "yes":
        return "Every model that touched this clip allows commercial use."
    return f"Commercial use: {overall} — {', '.join(limiting)} {describe(overall)}."


def run_licences(run_data: Mapping[str, Any], registry: Any = None) -> dict[str, Any] | None:
    """The licence record of a run (run.json's `licences`), or, for a run recorded before
    licences were, one rebuilt from its generator and stages with `registry` (None without one)."""
    rec = run_data.get("licences")
    if isinstance(rec, Mapping) and rec.get("models") is not None:
        return dict(rec)
    if registry is None:
        return None
    names = list(run_data.get("models") or {})
    for chain in (run_data.get("chains") or {}).values():
        names += [s.get("stage", "") for s in chain.get("stages") or [] if isinstance(s, Mapping)]
    return licence_record(registry, [n for n in names if n])


def chain_licences(record: Mapping[str, Any] | None, generator: str, stages: Iterable[str]) -> dict[str, Any] | None:
    """The models (generator, then the chain's stages) that touched one chain's clip and their
    most restrictive commercial_use, from a run's licence record (None without one)."""
    if not record:
        return None
    known = record.get("models") or {}
    names = [n for n in dict.fromkeys([generator, *stages]) if n in known]
    return {"models": names, "commercial_use": least(known[n]["commercial_use"] for n in names)}


__all__ = ["chain_licences", "COMMERCIAL_USE", "ALLOWED_FOR_COMMERCIAL", "allows_commercial", "refusal", "check_commercial",
           "licence_of", "licence_record", "least", "describe", "run_licences", "summary"]
