"""Accept only files that a client uploaded to this dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradio.data_classes import FileData
from gradio.utils import get_upload_folder, is_in_or_equal

from core.errors import StudioError


def uploaded_file(value: Any, what: str) -> Path:
    """The server path of a file a client uploaded to this dashboard (gradio's upload folder).

    Anything else is refused: a bare path, or a payload naming some other server file, which
    gr.Image and gr.api pass through without gradio's own upload check. So no request can make
    the server read (and then serve) files of its own.
    """
    if isinstance(value, dict):
        raw = value.get("path")
    elif isinstance(value, FileData):
        raw = value.path
    elif isinstance(value, (str, Path)):
        raw = value
    else:
        raw = None
    if not raw or not isinstance(raw, (str, Path)):
        raise StudioError(f"{what}: expected an uploaded file.")
    path = Path(raw)
    if not is_in_or_equal(path, get_upload_folder()):
        raise StudioError(f"{what} must be a file uploaded to this dashboard, not a path on the server.")
    return path.resolve()
