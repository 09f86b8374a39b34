"""CamI2V Studio core: models, camera geometry, sampling, post-processing, metrics, video I/O,
model management and the service object the UI and the CLI call. Never imports gradio."""

__version__ = "0.1.0"
