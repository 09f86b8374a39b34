"""Caption text clean-up, the photo as pixels, and the on-disk caption cache keyed by a hash of both."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .defaults import DEFAULT_MAX_WORDS

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

# -- caption post-processing and cache ------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LEAD_IN = re.compile(r"^(caption|description|answer)\s*:\s*", re.IGNORECASE)


def clean_caption(text: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """One line, no surrounding quotes or "Caption:" lead-in, at most `max_words` words."""
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    text = _LEAD_IN.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    words = text.split(" ")
    if max_words > 0 and len(words) > max_words:
        text = " ".join(words[:max_words]).rstrip(",;:-") + "."
    return text


def image_array(image: "Image.Image | np.ndarray | str | Path") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image, an array or an image file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        except FileNotFoundError:
            raise InputError(f"{image}: image file not found.") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{image}: not a readable image ({exc}).") from None
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"Expected an RGB image of shape (H, W, 3), got an array of shape {arr.shape}.")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if min(arr.shape[:2]) < 1:
        raise InputError("The image is empty.")
    return np.ascontiguousarray(arr)


def caption_key(pixels: np.ndarray, prompt: str, model_name: str, *, max_new_tokens: int, max_words: int) -> str:
    """sha256 over the pixels (with their shape), the prompt, the model and the generation budget."""
    h = hashlib.sha256()
    h.update(b"caption-v1\0")
    h.update(json.dumps([model_name, prompt, list(pixels.shape), max_new_tokens, max_words]).encode())
    h.update(b"\0")
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


class CaptionCache:
    """Captions by key, in memory and in `folder/captions.json` (written atomically).

    A missing or unreadable file starts an empty cache; the oldest entries are dropped beyond
    `max_entries`. Thread-safe.
    """

    FILENAME = "captions.json"

    def __init__(self, folder: str | Path | None = None, max_entries: int = 5000):
        self.path = Path(folder) / self.FILENAME if folder is not None else None
        self.max_entries = max_entries
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    entries = data.get("entries", {}) if isinstance(data, dict) else {}
                    self._entries = {k: v for k, v in entries.items()
                                     if isinstance(v, dict) and isinstance(v.get("caption"), str)}
                except (OSError, ValueError):
                    self._entries = {}
        return self._entries

    def get(self, key: str) -> str | None:
        with self._lock:
            hit = self._load().get(key)
            return hit["caption"] if hit else None

    def put(self, key: str, caption: str, **info: Any) -> None:
        with self._lock:
            entries = self._load()
            entries.pop(key, None)
            entries[key] = {"caption": caption, "time": time.time(), **info}
            while len(entries) > self.max_entries:
                entries.pop(next(iter(entries)))
            self._save(entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "entries": entries}, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            # A read-only or full disk only costs the on-disk copy; captions still work.
            pass
