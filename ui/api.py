"""The programmatic API (gradio_client): `/walkthrough`, photo in, run folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import gradio as gr
from gradio.data_classes import FileData

from core import apiargs
from core.errors import StudioError
from core.service import CameraSpec, JobRequest, Studio

from .feedback import request_user as _user
from .forms import _error
from .uploads import uploaded_file


def add_walkthrough_api(studio: Studio) -> None:
    """Publish `/walkthrough` in the current Blocks context (no UI of its own)."""

    async def walkthrough(photo: FileData, model: str = "kenburns", preset: str = "push-in",
                          chains: list[str] = ["none"], seed: int = 0, prompt: str = "",
                          params: dict = {}, amount: float = -1.0, distance: float = -1.0,
                          request: gr.Request = None) -> dict:
        """Programmatic walkthrough (gradio_client): photo -> run folder; returns the run id,
        each chain's mp4 path on the server and its mean temporal PSNR/SSIM. The call owns its
        server job: cancelling the call (or disconnecting) cancels the job."""
        user = _user(request)
        try:
            path = uploaded_file(photo, "photo")
            image = studio.load_image(path)
            amt, dist = apiargs.number_arg(amount, "amount"), apiargs.number_arg(distance, "distance")
            job_request = JobRequest(
                image=image, image_bytes=Path(path).read_bytes(), model=apiargs.text_arg(model, "model", 100),
                camera=CameraSpec(preset=apiargs.text_arg(preset, "preset", 100), amount=None if amt < 0 else amt,
                                  distance=None if dist < 0 else dist),
                prompt=apiargs.text_arg(prompt, "prompt"), seed=seed, params=apiargs.params_arg(params),
                chains=apiargs.chains_arg(chains))
            job = studio.submit_job(job_request, user=user)
        except BaseException as exc:
            raise _error(exc)
        try:
            info = await anyio.to_thread.run_sync(studio.wait_job, job, abandon_on_cancel=True)
        except BaseException:  # the caller cancelled or went away: the job is this call's
            studio.cancel(job)
            raise
        out: dict[str, Any] = {"run_id": info.run_id, "seed": seed, "chains": {}}
        for ev in studio.job_events(job):
            if ev.kind in ("generated", "chain"):
                native = ev.metrics["native"]
                out["chains"][ev.chain] = {"video": str(ev.video), "size": ev.metrics["size"],
                                           "tpsnr": native["tpsnr"]["mean"], "tssim": native["tssim"]["mean"]}
        if info.status != "complete":
            raise _error(StudioError(info.error or f"The job ended {info.status}."))
        return out

    gr.api(walkthrough, api_name="walkthrough", concurrency_limit=None)
