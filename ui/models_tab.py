"""The Models tab: every registry entry with its availability, a weights download, and the models
the manager holds now. Layout and wiring only: each handler is one `Studio` call (model_infos,
download_weights, model_status / memory_summary). A download refreshes the model pickers of every
tab and the model notes at once (no restart).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import gradio as gr

from core.errors import StudioError
from core.service import Studio

from .create_tab import CreateTab
from .feedback import status_error, status_ok
from .runs_models import MODEL_HEADERS, MODEL_TYPES, model_rows


def build_models_tab(studio: Studio, create: CreateTab, pickers: Sequence[tuple[Any, str]] = ()) -> dict[str, Any]:
    """Lay out the Models tab in the current Blocks context and wire its events; returns its
    components, `refresh_models` (run on page load) with its outputs, and `loaded_models` (the
    dashboard polls it). pickers: other tabs' model dropdowns, (component, kind), whose labels
    follow a download too."""
    models_table = gr.Dataframe(headers=MODEL_HEADERS, datatype=MODEL_TYPES, interactive=False, wrap=True,
                                max_height=1200, elem_id="models-table")
    with gr.Row():
        dl_pick = gr.Dropdown(label="Fetch weights of", choices=[
            (e.label, e.name) for e in studio.registry if e.files], scale=4)
        dl_btn = gr.Button("Download", scale=1)
    dl_log = gr.Markdown()
    gr.Markdown("### Loaded models")
    status_table = gr.Dataframe(headers=["name", "state", "device", "dtype", "MiB", "last used"],
                                interactive=False)
    mem_md = gr.Markdown()
    status_refresh = gr.Button("Refresh", size="sm")
    create_pickers = [create.model, create.denoiser, create.upscaler, create.interpolator]

    def loaded_models():
        st = [[r["name"], r["state"], str(r.get("device") or ""), str(r.get("dtype") or ""),
               round((r.get("bytes") or 0) / 2**20, 1),
               time.strftime("%H:%M:%S", time.localtime(r["last_used"])) if r.get("last_used") else ""]
              for r in studio.model_status()]
        mem = studio.memory_summary()
        parts = []
        for k, v in mem.items():
            if isinstance(v, (dict, list)):
                continue
            if k.endswith("_bytes") and isinstance(v, (int, float)):
                k, v = k[:-6], f"{v / 2**30:.2f} GiB"
            parts.append(f"**{k.replace('_', ' ')}**: {v}")
        return st, " · ".join(parts)

    def refresh_models():
        return (model_rows(studio.model_infos()), *loaded_models())

    def download(name, commercial_only=False, progress=gr.Progress()):
        """Fetch the weights, then show the models as they are now: the table and every model
        picker (Create, Study, Tour) say "available" at once, without a restart (Create's pickers
        still without the models its "Commercial use only" switch hides)."""
        if not name:
            raise gr.Error("Pick a model to download.")
        try:
            reports = studio.download_weights(name, progress=lambda f, m: progress(f, desc=m))
            line = status_ok("; ".join(str(getattr(r, "message", r)) for r in reports))
        except StudioError as exc:
            line = status_error(exc)
        infos = studio.model_infos()
        return (line, model_rows(infos), *loaded_models(), *create.refresh_catalogue(infos, bool(commercial_only)),
                *(gr.update(choices=[(i.display, i.name) for i in infos if i.kind == kind]) for _, kind in pickers))

    refreshed = [models_table, status_table, mem_md]
    status_refresh.click(refresh_models, None, refreshed)
    dl_btn.click(download, [dl_pick, create.commercial_box], [dl_log, *refreshed, *create_pickers, *(c for c, _ in pickers)],
                 concurrency_id="download", concurrency_limit=1)
    return {"table": models_table, "pick": dl_pick, "download": dl_btn, "log": dl_log, "status": status_table,
            "memory": mem_md, "refresh": status_refresh, "refresh_models": refresh_models, "refreshed": refreshed,
            "loaded_models": loaded_models}
