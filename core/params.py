"""Typed descriptions of the user-facing parameters of a generator or a stage.

A `ParamSpec` says what a control is called, its type, range and default. The service validates
requests against the specs (clear errors for out-of-range values), and the UI shows only the
controls the selected model declares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .errors import InputError


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str  # "float" | "int" | "bool" | "str" | "choice"
    default: Any
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: Sequence[Any] = field(default_factory=tuple)
    help: str = ""

    def coerce(self, value: Any) -> Any:
        """Return `value` converted to this parameter's type, or raise InputError."""
        label = self.label or self.name
        if value is None:
            return self.default
        try:
            if self.kind == "float":
                v = float(value)
                if not math.isfinite(v):
                    raise InputError(f"{label} must be a finite number, got {value!r}.")
            elif self.kind == "int":
                fv = float(value)
                if not math.isfinite(fv) or fv != int(fv):
                    raise InputError(f"{label} must be a whole number, got {value!r}.")
                v = int(fv)
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() in ("1", "true", "yes", "on"):
                        v = True
                    elif value.lower() in ("0", "false", "no", "off"):
                        v = False
                    else:
                        raise InputError(f"{label} must be true or false, got {value!r}.")
                else:
                    v = bool(value)
            elif self.kind == "str":
                v = str(value)
            elif self.kind == "choice":
                if value not in self.choices:
                    raise InputError(
                        f"{label} must be one of {', '.join(map(str, self.choices))}; got {value!r}."
                    )
                v = value
            else:  # pragma: no cover - programming error
                raise ValueError(f"unknown ParamSpec kind {self.kind!r}")
        except (TypeError, ValueError) as exc:
            raise InputError(f"{label}: cannot read {value!r} as {self.kind}.") from exc
        if self.kind in ("float", "int"):
            if self.minimum is not None and v < self.minimum:
                raise InputError(f"{label} must be at least {self.minimum}, got {v}.")
            if self.maximum is not None and v > self.maximum:
                raise InputError(f"{label} must be at most {self.maximum}, got {v}.")
        return v


def resolve_params(
    specs: Sequence[ParamSpec], given: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge `defaults` (e.g. from models.json) and user `given` values over the specs.

    Unknown names are an InputError (a typo must not be silently ignored).
    """
    by_name = {s.name: s for s in specs}
    merged: dict[str, Any] = {s.name: s.default for s in specs}
    for source in (defaults or {}), (given or {}):
        for k, v in source.items():
            if k not in by_name:
                raise InputError(f"Unknown parameter {k!r}; known: {', '.join(sorted(by_name)) or 'none'}.")
            merged[k] = by_name[k].coerce(v)
    return merged
