"""The Gradio dashboard: layout and wiring over `core.service.Studio` (no model logic here)."""

from .app import build_ui

__all__ = ["build_ui"]
