"""What the dashboard says back: one error line, status lines without emoji, model names on
results, and the photo input that never shows an internal error.

Status glyphs are plain text in a CSS badge (`.badge-ok`, `.badge-error`, `.badge-note` in
assets/style.css): Debian's chromium has no colour-emoji font, so emoji showed as boxes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import gradio as gr

from core.errors import StudioError

# The endpoints a client may call (listed on the "Use via API" page); every other event is an
# internal handler of the page and is hidden from it.
PUBLIC_API = ("caption", "generate", "walkthrough", "study", "export", "tour_preview", "tour_generate", "tour_resume")

_PATHLIKE = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/'\"]+){2,}/?")


def error_line(exc: BaseException | str) -> str:
    """One line for the user: the StudioError's own text, or a generic line for a bug (the
    traceback goes to the server log). Server paths never reach the page."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, StudioError):
        text = str(exc)
    else:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        text = f"Unexpected error ({type(exc).__name__}); details are in the server log."
    text = " ".join(str(text).split())  # one line
    return _PATHLIKE.sub(lambda m: os.path.basename(m.group(0).rstrip("/")) or "…", text)


def status_error(exc: BaseException | str, kept: str = "") -> str:
    """Markdown for the status line after a failure: a text badge, the one error line and what
    was kept (e.g. 'The 2 finished chains were kept in run X.')."""
    return f'<span class="badge badge-error">Error</span> {error_line(exc)}' + (f" {kept}" if kept else "")


def status_ok(text: str) -> str:
    return f'<span class="badge badge-ok">Done</span> {text}'


def status_note(text: str) -> str:
    return f'<span class="badge badge-note">Note</span> {text}'


# ------------------------------------------------------------------------------ model names

def generator_caption(model: str, label: str | None = None, is_ai: bool = True) -> str:
    """How a result names the model that made it: "CamI2V 512x320", or "Ken Burns · no-AI
    preview" for the embedded "Ken Burns preview (no AI)" (the phrase is always there)."""
    text = label or model
    if not is_ai and "no-AI preview" not in text:
        base = re.sub(r"\s*\(no AI\)", "", text)
        base = re.sub(r"\s+preview$", "", base, flags=re.IGNORECASE) or model
        text = f"{base} · no-AI preview"
    return text


def download_name(chain: str, model: str, is_ai: bool = True, ext: str = "mp4") -> str:
    """File name of a chain's download: the chain's name (as the CLI writes it) and the model,
    e.g. 'denoise+upscale__cami2v-512.mp4' or 'none__kenburns-no-AI-preview.mp4'."""
    from core.exports import chain_file_stem

    return f"{chain_file_stem(chain, model, is_ai)}.{ext}"


def named_downloads(run_dir: Path, chains: Mapping[str, str | Path], model: str, is_ai: bool = True) -> list[str]:
    """Links (or copies) of the chains' videos under `run_dir/downloads/` named by
    `download_name`; returns their paths in order. The run's own files stay as they are."""
    out_dir = Path(run_dir) / "downloads"
    out_dir.mkdir(exist_ok=True)
    paths = []
    for chain, video in chains.items():
        video = Path(video)
        dest = out_dir / download_name(chain, model, is_ai, video.suffix.lstrip(".") or "mp4")
        if not dest.exists() or dest.stat().st_size != video.stat().st_size:
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(video, tmp)
            except OSError:
                import shutil

                shutil.copyfile(video, tmp)
            os.replace(tmp, dest)
        paths.append(str(dest))
    return paths


# ------------------------------------------------------------------------------ the photo input

class PhotoInput(gr.Image):
    """gr.Image that hands a file it cannot decode to the handler as a path, so the service's
    own one-line message ("x.png is not an image …", the CLI's) is what the user sees instead
    of gradio's preprocessing error with server paths. Needs type="filepath"."""

    def get_block_name(self) -> str:  # the browser draws it with gr.Image's own component
        return "image"

    def preprocess(self, payload):  # noqa: D401 (gradio's signature)
        try:
            return super().preprocess(payload)
        except Exception:
            path = getattr(payload, "path", None)
            if self.type == "filepath" and path:
                return str(path)
            raise gr.Error("The photo could not be read as an image.", print_exception=False) from None


# ------------------------------------------------------------------------------ camera file export

def camera_export_path(root: Path, text: str, stem: str) -> Path:
    """Where the camera path's RealEstate10K text is offered for download: a folder named by
    the text's hash, so the same path is written once and sessions never overwrite each
    other's file; `stem` must already be sanitised."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(root) / "camera-exports" / digest
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / f"camera-{stem}.txt"
    if not f.exists():
        tmp = f.with_name(f.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, f)
    return f


# ------------------------------------------------------------------------------ API page

def hide_internal_endpoints(demo: gr.Blocks, public: Iterable[str] = PUBLIC_API) -> list[str]:
    """Hide every event handler from the API page except the named public endpoints; returns
    the public api names that exist. Called once after the layout is built."""
    public = set(public)
    shown = []
    for fn in demo.fns.values():
        name = fn.api_name if isinstance(fn.api_name, str) else None
        if name in public:
            shown.append(name)
            continue
        fn.api_visibility = "undocumented"  # hidden from the API page; the page itself still calls it
    return sorted(shown)


def scroll_on_finish(demo: gr.Blocks, api_name: str) -> bool:
    """Let the event published as `api_name` scroll the page to its outputs (the results sit
    below the form); True if found."""
    for fn in demo.fns.values():
        if fn.api_name == api_name:
            fn.scroll_to_output = True
            return True
    return False


def keep(n: int) -> list[Any]:
    """`n` no-op updates: outputs keep their last good state after an error."""
    return [gr.update() for _ in range(n)]


class ClickBook:
    """The waypoints of each browser session, kept on the server.

    Clicks on the framing preview come faster than a round trip (300 ms apart); each handler
    call gets the waypoint state as it was when the click was sent, so building on that input
    would drop points. Every writer of the waypoint state records it here, and a click appends
    to this copy under a lock. Keyed by gradio's session hash; a few floats per session."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._points: dict[str, list[tuple[float, float]]] = {}

    @staticmethod
    def _key(request: Any) -> str:
        return str(getattr(request, "session_hash", None) or "")

    def set(self, request: Any, points: Iterable[Iterable[float]]) -> list[tuple[float, float]]:
        pts = [(float(p[0]), float(p[1])) for p in points or []]
        with self._lock:
            self._points[self._key(request)] = pts
        return list(pts)

    def append(self, request: Any, current: Iterable[Iterable[float]], point: tuple[float, float]
               ) -> list[tuple[float, float]]:
        """The session's points plus `point`; `current` (the click's own view of the state)
        seeds a session seen for the first time."""
        key = self._key(request)
        with self._lock:
            pts = self._points.get(key)
            if pts is None:
                pts = [(float(p[0]), float(p[1])) for p in current or []]
            pts = pts + [point]
            self._points[key] = pts
            return list(pts)


def request_user(request: gr.Request | None) -> str | None:
    """The logged-in user name of a request (None without --auth): runs and jobs are listed,
    followed and cancelled per user."""
    return getattr(request, "username", None) or None


def stage_picker(infos: Sequence[Any], fallback: str, label: str, **kw: Any) -> gr.Dropdown:
    """A dropdown of the stages of one role (ModelInfo rows), set to the first available one."""
    return gr.Dropdown([(i.display, i.name) for i in infos],
                       value=next((i.name for i in infos if i.available), fallback), label=label, **kw)
