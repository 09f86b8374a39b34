"""The Tour tab: several rooms, one walkthrough video. Layout and wiring only; the work is in
`core.tour` through `Studio.run_tour`.

The dashboard calls `build_tour_tab(studio)` inside ``with gr.Tab("Tour"):``. A tour shares the
device queue with Generate and Study (``concurrency_id="gpu"``, limit 1).
"""

from __future__ import annotations

import html
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import gradio as gr

from core import camera as cam
from core import tour as tourlib
from core.errors import InputError, StudioError
from core.postprocess.chains import STANDARD_CHAINS
from core.service import Studio

from .feedback import request_user as _user
from .feedback import stage_picker, status_error, status_ok
from .players import file_url
from .uploads import uploaded_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"
HEADERS = ["order", "photo", "move", "seconds", "prompt"]
SIZES = [("1280x720 (HD)", "1280x720"), ("1920x1080 (Full HD)", "1920x1080"), ("960x540", "960x540"),
         ("640x360 (quick look)", "640x360")]


def _error(exc: BaseException) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(str(exc), print_exception=False)
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). Details are in the server log.")


def _rows(value: Any) -> list[list[Any]]:
    """The shot table as a list of rows (gradio may hand over a DataFrame or a dict)."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):  # pandas
        return [list(r) for r in value.values.tolist()]
    if isinstance(value, dict) and "data" in value:
        return [list(r) for r in value["data"]]
    return [list(r) for r in value]


def _photo_paths(files: Any, with_examples: bool, examples: list[str]) -> dict[str, Path]:
    """Photo name -> server path: uploads (checked to be this dashboard's uploads) then examples."""
    out: dict[str, Path] = {}
    for f in files or []:
        p = uploaded_file(f, "Photo")
        name, k = p.name, 2
        while name in out:  # two uploads with one name stay two shots
            name, k = f"{p.stem}-{k}{p.suffix}", k + 1
        out[name] = p
    if with_examples:
        for e in examples:
            out.setdefault(Path(e).name, Path(e))
    return out


def shot_rows(names: list[str], current: list[list[Any]]) -> list[list[Any]]:
    """Table rows for `names`: rows already edited are kept (in their order), new photos are
    appended with the default move and length."""
    kept = [r for r in current if len(r) >= 2 and r[1] in names]
    have = {r[1] for r in kept}
    rows = [list(r) for r in kept]
    for i, r in enumerate(rows):
        r[0] = i + 1 if r[0] in (None, "") else r[0]
    for name in names:
        if name not in have:  # appended after the last shot
            i = len(rows)
            last = max((float(r[0]) for r in rows if _is_number(r[0])), default=0)
            rows.append([int(last) + 1, name, tourlib.default_move(i), tourlib.DEFAULT_SECONDS, ""])
    return rows


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def tour_from_table(rows: list[list[Any]], paths: dict[str, Path], **options: Any) -> tourlib.Tour:
    """The Tour the table describes: shots sorted by their "order" number (ties keep row order)."""
    shots = []
    for k, r in enumerate(rows):
        r = list(r) + [None] * (len(HEADERS) - len(r))
        order, name, move, seconds, prompt = r[:5]
        if not name:
            continue
        if name not in paths:
            raise InputError(f"Row {k + 1}: no photo named {name!r}; add it above or remove the row.")
        try:
            key = float(order) if order not in (None, "") else float(k + 1)
        except (TypeError, ValueError):
            raise InputError(f"Row {k + 1}: order must be a number, got {order!r}.") from None
        shots.append((key, k, tourlib.Shot(paths[name], str(move or tourlib.default_move(k)),
                                           tourlib.DEFAULT_SECONDS if seconds in (None, "") else seconds,
                                           str(prompt or ""))))
    shots.sort(key=lambda t: (t[0], t[1]))
    return tourlib.Tour(shots=tuple(s for _, _, s in shots), **options)


def player_html(shots: list[dict[str, Any]], tour_video: Path | None = None, note: str = "") -> str:
    """The tour player: the joined tour when ready, above one small looping player per shot
    (filled in as each shot finishes; pending shots show a placeholder)."""
    parts = []
    if tour_video is not None:
        parts.append(f'<video class="tour" src="{html.escape(file_url(tour_video))}" controls playsinline '
                     f'preload="auto" style="width:100%;max-height:480px;background:#000"></video>')
    cells = []
    for s in shots:
        label = html.escape(f"Shot {s['index'] + 1} · {s['move']} · {s['seconds']:g} s")
        if s.get("video"):
            cells.append(f'<figure class="tour-shot" data-index="{s["index"]}" style="margin:0">'
                         f'<video class="shot" src="{html.escape(file_url(s["video"]))}" muted loop autoplay '
                         f'playsinline preload="auto" style="width:100%"></video>'
                         f'<figcaption>{label}{" · kept" if s.get("skipped") else ""}</figcaption></figure>')
        else:
            cells.append(f'<figure class="tour-shot pending" style="margin:0"><div style="aspect-ratio:16/9;'
                         f'background:#2224;display:flex;align-items:center;justify-content:center">waiting…</div>'
                         f'<figcaption>{label}</figcaption></figure>')
    if cells:
        parts.append('<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px">'
                     + "".join(cells) + "</div>")
    if note:
        parts.append(f'<div class="dim">{html.escape(note)}</div>')
    return "".join(parts) or '<div class="players-empty">Add photos, then Preview the tour.</div>'


def build_tour_tab(studio: Studio) -> dict[str, Any]:
    """Lay out the Tour tab in the current Blocks context and wire its events; returns the
    components by name (for tests)."""
    generators = studio.model_infos("generator")
    denoisers = studio.model_infos("denoiser")
    upscalers = studio.model_infos("upscaler")
    examples = sorted(str(p) for p in (ASSETS / "examples").glob("*.jpg"))
    moves = list(cam.PRESETS)

    gr.Markdown("A walkthrough of several rooms: one shot per photo, joined by cross-fades (or dips to black, "
                "or cuts) into one MP4 at 24/30 fps, 16:9, with an optional 9:16 cut for social media. "
                "**Preview** renders the whole tour with Ken Burns in seconds; **Generate tour** then renders "
                "every shot with the chosen model, shot by shot (each appears below when ready). **Cancel** keeps "
                "the finished shots; **Resume** renders only the rest.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            photos = gr.File(label="Photos (one shot each, in order)", file_count="multiple", file_types=["image"],
                             type="filepath", elem_id="tour-photos")
            use_examples = gr.Checkbox(value=False, label=f"Add the {len(examples)} example rooms",
                                       visible=bool(examples), elem_id="tour-examples")
            table = gr.Dataframe(headers=HEADERS, datatype=["number", "str", "str", "number", "str"],
                                 column_count=(5, "fixed"), interactive=True, type="array", elem_id="tour-shots",
                                 label=f"Shots: order, camera move ({', '.join(moves)}), seconds, prompt")
            with gr.Row():
                transition = gr.Dropdown([(v, k) for k, v in tourlib.TRANSITION_LABELS.items()], value="crossfade",
                                         label="Transition", elem_id="tour-transition")
                trans_secs = gr.Slider(0.0, tourlib.MAX_TRANSITION_SECONDS, value=tourlib.DEFAULT_TRANSITION_SECONDS,
                                       step=0.1, label="Transition (s)", elem_id="tour-transition-seconds")
            with gr.Row():
                fps = gr.Radio([24, 30], value=tourlib.DEFAULT_FPS, label="fps", elem_id="tour-fps")
                size = gr.Dropdown(SIZES, value="1280x720", label="Size (16:9)", elem_id="tour-size")
                vertical = gr.Checkbox(value=True, label="Also a 9:16 vertical cut", elem_id="tour-vertical")
            with gr.Row():
                model = gr.Dropdown([(i.display, i.name) for i in generators], value=studio.default_generator(),
                                    label="Generate with", elem_id="tour-model")
                chain = gr.Dropdown(list(STANDARD_CHAINS), value="none", label="Chain on every shot",
                                    elem_id="tour-chain")
            with gr.Row():
                denoiser = stage_picker(denoisers, "nlmeans", "Denoise with")
                upscaler = stage_picker(upscalers, "lanczos", "Upscale with")
                seed = gr.Number(value=12333, precision=0, minimum=0, maximum=2**32 - 1, label="Seed")
            with gr.Row():
                preview_btn = gr.Button("Preview (Ken Burns)", variant="secondary", elem_id="tour-preview")
                generate_btn = gr.Button("Generate tour", variant="primary", elem_id="tour-generate")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="tour-cancel")
                resume_btn = gr.Button("Resume", elem_id="tour-resume")
            status = gr.Markdown(elem_id="tour-status")
        with gr.Column(scale=6):
            player = gr.HTML(player_html([]), elem_id="tour-player")
            downloads = gr.File(label="Download the tour (16:9 and 9:16)", file_count="multiple", interactive=False,
                                elem_id="tour-files")
    job_state = gr.State("")
    run_state = gr.State("")  # the last tour run (for Resume)

    def on_photos(files, with_examples, rows):
        try:
            names = list(_photo_paths(files, with_examples, examples))
        except BaseException as exc:
            raise _error(exc)
        return shot_rows(names, _rows(rows))

    def cancel(job: str, request: gr.Request = None) -> str:
        if job and studio.cancel(job, user=_user(request)):
            return "Cancelling after the current frame… finished shots are kept (Resume renders the rest)."
        return "Nothing is running."

    def run(mode, job, last_run, files, with_examples, rows, trans, tsecs, fps_v, size_v, vert, model_v, chain_v,
            den, up, seed_v, request: gr.Request = None, progress=gr.Progress()):
        """Submit the tour as a server job (a closed page never stops it; Cancel does) and follow
        it: the player fills in shot by shot."""
        user = _user(request)
        try:
            if mode == "resume":
                if not last_run:  # e.g. after a restart: the newest unfinished tour
                    last_run = next((r.id for r in studio.list_runs(limit=200, user=user) if r.status != "complete"
                                     and (r.data or {}).get("kind") == "tour"), "")
                if not last_run:
                    raise InputError("Nothing to resume: every tour run is complete.")
                tour, resume = None, last_run
                saved = studio.open_run(last_run, user)
                planned = tourlib.Tour.from_dict(
                    json.loads((saved.dir / tourlib.TOUR_FILE).read_text(encoding="utf-8")), base=saved.dir)
            else:
                paths = _photo_paths(files, with_examples, examples)
                if not paths:
                    raise InputError("Add at least one photo (or the example rooms).")
                width, height = tourlib.parse_size(size_v or "1280x720")
                preview = mode == "preview"
                planned = tour = tour_from_table(
                    _rows(rows), paths, transition=tourlib.Transition(trans or "crossfade", tsecs or 0.0),
                    fps=int(fps_v or tourlib.DEFAULT_FPS), width=width, height=height, vertical=bool(vert),
                    model="kenburns" if preview else model_v, chain="none" if preview else (chain_v or "none"),
                    roles={"denoise": den, "upscale": up}, seed=int(seed_v or 0),
                    # the preview is a quick look at timing and framing: bilinear Ken Burns
                    params={"quality": "fast"} if preview else {})
                resume = None
            job = studio.submit_tour(tour, resume=resume, user=user)
        except BaseException as exc:
            raise _error(exc)
        shots = [{"index": i, "move": s.move, "seconds": s.seconds, "video": None}
                 for i, s in enumerate(planned.shots)]
        what = {"preview": "Ken Burns preview", "generate": "Tour", "resume": "Resuming tour"}[mode]
        yield {status: f"{what}: {len(shots)} shot(s), {planned.duration:.2f} s at {planned.fps} fps…",
               player: player_html(shots), downloads: None, job_state: job}
        run_id = None
        try:
            for jev in studio.follow(job, coalesce_progress=True):
                if jev.kind == "progress":
                    progress(jev.fraction or 0.0, desc=jev.message)
                    continue
                if jev.kind in ("failed", "cancelled"):
                    raise StudioError(jev.error or jev.message)
                ev = jev.detail
                run_id = ev.run_id
                if ev.kind == "started":
                    yield {run_state: run_id}
                elif ev.kind == "shot":
                    shots[ev.index].update(video=ev.video, skipped=ev.skipped)
                    yield {player: player_html(shots), status: f"{what} `{run_id}`: shot {ev.index + 1} of "
                                                               f"{ev.total} {'kept' if ev.skipped else 'ready'}…"}
                elif ev.kind == "tour":
                    files_out = [str(ev.video)] + ([str(ev.vertical)] if ev.vertical else [])
                    yield {player: player_html(shots, ev.video), downloads: files_out}
                elif ev.kind == "done":
                    yield {status: status_ok(f"{what} `{run_id}` complete: {ev.seconds:.2f} s, {ev.num_frames} frames "
                                             f"at {planned.fps} fps, {planned.width}x{planned.height}"
                                             + (f" + {planned.vertical_size[0]}x{planned.vertical_size[1]} vertical"
                                                if planned.vertical else "") + ".")}
        except BaseException as exc:
            if isinstance(exc, StudioError):
                done = sum(1 for s in shots if s["video"])
                yield {status: status_error(exc, f"{done} finished shot(s) are kept in run `{run_id}`; Resume renders "
                                                 "the rest." if run_id else ""), player: player_html(shots)}
                return
            raise _error(exc)

    outputs = [status, player, downloads, run_state, job_state]
    inputs = [job_state, run_state, photos, use_examples, table, transition, trans_secs, fps, size, vertical, model,
              chain, denoiser, upscaler, seed]
    photos.change(on_photos, [photos, use_examples, table], [table], queue=False)
    use_examples.change(on_photos, [photos, use_examples, table], [table], queue=False)
    for btn, mode in ((preview_btn, "preview"), (generate_btn, "generate"), (resume_btn, "resume")):
        # the tour runs on the server's job worker (one job at a time on the device); this event
        # only follows it, so it holds no queue slot
        btn.click(run, [gr.State(mode)] + inputs, outputs, concurrency_limit=None, api_name=f"tour_{mode}",
                  show_progress_on=[status])
    cancel_btn.click(cancel, [job_state], [status], queue=False)
    return {"photos": photos, "use_examples": use_examples, "table": table, "transition": transition,
            "transition_seconds": trans_secs, "fps": fps, "size": size, "vertical": vertical, "model": model,
            "chain": chain, "preview": preview_btn, "generate": generate_btn, "cancel": cancel_btn,
            "resume": resume_btn, "status": status, "player": player, "downloads": downloads, "run": run_state}
