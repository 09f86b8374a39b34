"""The Create tab's "Commercial use only" switch: which generators and stages it hides, and why.

Pure functions over the service's `ModelInfo`s (tested without a browser). The switch hides the
models whose licence does not allow commercial use from the Generator / Denoise / Upscale /
Interpolate dropdowns and says which and why beside them; the job itself is also submitted with
`commercial_only`, so a custom chain that names a hidden stage is refused by the service with
the same reason.
"""

from __future__ import annotations

from typing import Any, Sequence

from core.licences import describe

LABEL = "Commercial use only"
HELP = ("Offer only models whose licence allows commercial use (e.g. on a property listing); "
        "'conditions' models are kept: read their terms.")


def visible(infos: Sequence[Any], commercial_only: bool) -> list[Any]:
    """The infos the dropdown offers: all of them, or those whose licence allows commercial use."""
    return [i for i in infos if not commercial_only or i.commercial_ok]


def choices(infos: Sequence[Any], commercial_only: bool, current: str | None, fallback: str) -> tuple[list, str]:
    """(dropdown choices as (label, name), value): the current pick when still offered, else the
    first available offered model, else `fallback`."""
    shown = visible(infos, commercial_only)
    names = [i.name for i in shown]
    if current in names:
        value = current
    else:
        value = next((i.name for i in shown if i.available), names[0] if names else fallback)
    return [(i.display, i.name) for i in shown], value


def hidden_note(infos: Sequence[Any], commercial_only: bool) -> str:
    """One Markdown line per hidden model with the reason, or "" when the switch is off."""
    if not commercial_only:
        return ""
    hidden = [i for i in infos if not i.commercial_ok]
    if not hidden:
        return "Every model here allows commercial use."
    lines = [f"- **{i.label}** — {i.license or 'no licence stated'}: {describe(i.commercial_use)}"
             + (f" ([terms]({i.license_url}))" if i.license_url else "") for i in hidden]
    return "Hidden by *commercial use only*:\n" + "\n".join(lines)
