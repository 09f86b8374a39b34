"""Checks for arguments that arrive from an HTTP API call as plain JSON, where any type can show
up where another was declared (a string for a list, a list for an object, text for a number).
Each returns the typed value or raises one-line `InputError` naming the argument.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .errors import InputError


def chains_arg(value: Any, name: str = "chains") -> tuple[str, ...]:
    """A list of chain texts; one string is one chain (or a comma-separated list of them),
    never a sequence of letters."""
    if value is None:
        return ("none",)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise InputError(f"{name} must be a list of chain names such as [\"none\", \"denoise+upscale\"], "
                         f"got {type(value).__name__}.")
    return tuple(value)


def params_arg(value: Any, name: str = "params") -> dict[str, Any]:
    """An object of parameter name -> value (empty for None)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError(f"{name} must be an object of parameter names and values, got {type(value).__name__}.")
    return dict(value)


def number_arg(value: Any, name: str) -> float:
    """A finite number (bools and text are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip()) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            raise InputError(f"{name} must be a number.")
    if not math.isfinite(float(value)):
        raise InputError(f"{name} must be a finite number, got {value}.")
    return float(value)


def text_arg(value: Any, name: str, max_chars: int = 2000) -> str:
    """A string of at most `max_chars` characters (None is empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > max_chars:
        raise InputError(f"{name} is {len(value)} characters long; at most {max_chars} are allowed.")
    return value
