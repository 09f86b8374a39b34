"""CamI2V Studio: start the dashboard.

    python app.py                       # http://127.0.0.1:7860, embedded default, no weights needed
    python app.py --port 7861 --auth me:secret --device cuda --dtype bf16

No model is loaded at start-up (unless --preload names some); the port is exact (an SSH tunnel
depends on it), so a taken port is an error, not a silent move to the next one.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

from core.errors import StudioError

ROOT = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CamI2V Studio dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=7860, help="port to bind; fails if taken (default 7860)")
    p.add_argument("--models", default=str(ROOT / "models.json"), help="model registry (default models.json)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--backend", default="torch", choices=["torch", "openvino", "openvino-int8"],
                   help="CamI2V and SVD through OpenVINO on the CPU (optional package): openvino computes in "
                        "float32 and matches PyTorch; openvino-int8 uses int8 weights and bfloat16 where the CPU "
                        "has it (about 3x faster)")
    p.add_argument("--outputs", default=str(ROOT / "outputs"), help="folder for runs (default outputs/)")
    p.add_argument("--auth", default=None, help="user:password, or a file with one user:password per line")
    p.add_argument("--root-path", default=None, help="URL prefix when served behind a reverse proxy")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (needs --auth)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind or --share without --auth (anyone who can reach it can use it)")
    p.add_argument("--preload", default="", help="comma-separated model names to load at start-up")
    p.add_argument("--max-queue", type=int, default=32, help="most jobs waiting in the GPU queue")
    p.add_argument("--allowed-hosts", default="",
                   help="comma-separated extra Host names to answer to (loopback names and --host always are)")
    p.add_argument("--shared-runs", action="store_true",
                   help="with --auth: every user sees every run (one team); default: each user sees their own")
    return p.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_auth(spec: str | None) -> list[tuple[str, str]] | None:
    """`user:password` or a file of such lines (comments with #). None when not given."""
    if not spec:
        return None
    path = Path(spec).expanduser()
    if path.is_file() and path.stat().st_mode & 0o077:
        # On a shared login or GPU node every other user could read the passwords.
        print(f"warning: {path} is readable by other users; run `chmod 600 {path}`.", file=sys.stderr)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else [spec]
    pairs = []
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            where = f"{path}, line {i}" if path.is_file() else "--auth"
            raise SystemExit(f"error: {where}: expected user:password")
        pairs.append((user, password))
    if not pairs:
        raise SystemExit(f"error: --auth {spec}: no user:password found")
    return pairs


def check_security(args: argparse.Namespace, auth) -> None:
    if auth or args.insecure:
        return
    if not is_loopback(args.host):
        raise SystemExit(
            f"error: refusing to listen on {args.host} without --auth: every other user of this network "
            "could use the dashboard. Add --auth user:password, bind 127.0.0.1 and use an SSH tunnel, "
            "or pass --insecure if you really mean it."
        )
    if args.share:
        raise SystemExit("error: refusing --share without --auth (a public link). Add --auth user:password, "
                         "or pass --insecure if you really mean it.")


def check_port(host: str, port: int) -> None:
    """Fail with a clear message when the port is taken; an SSH tunnel depends on the exact port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # The server (uvicorn) binds with SO_REUSEADDR, which lets it reuse a port whose old
        # connections linger in TIME_WAIT/FIN_WAIT after a crash; the check must match it, or a
        # restart is refused for a minute although the server itself would start.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise SystemExit(
                f"error: port {port} on {host} is not free ({exc.strerror}). Stop whatever uses it "
                f"(`lsof -i :{port}`) or start with --port N and tunnel that port instead."
            ) from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = read_auth(args.auth)
    check_security(args, auth)
    check_port(args.host, args.port)
    try:
        _serve(args, auth)
    except StudioError as exc:  # a start-up problem (unwritable outputs, a corrupt preload): one line
        raise SystemExit(f"error: {exc}") from None


def _serve(args: argparse.Namespace, auth) -> None:
    from core.runs import ensure_writable_dir

    outputs = ensure_writable_dir(Path(args.outputs), "--outputs")  # before the slow imports

    from starlette.middleware import Middleware

    from core.service import Studio, StudioSettings
    from ui import build_ui
    from ui.guard import HostGuard, HostPolicy, ThrottledLogin

    per_user = bool(auth) and not args.shared_runs
    studio = Studio(StudioSettings(
        root=ROOT,
        models=Path(args.models),
        outputs=outputs,
        device=args.device,
        dtype=args.dtype,
        backend=args.backend,
        preload=tuple(n for n in args.preload.split(",") if n.strip()),
        per_user_runs=per_user,
    ))
    for warning in studio.startup_messages():
        print("warning:", warning, file=sys.stderr)
    from core.service import backend_hint

    if hint := backend_hint(studio.device, studio.backend):
        print("note:", hint, file=sys.stderr)
    policy = HostPolicy.build(args.host, args.root_path, args.allowed_hosts.split(","), share=args.share)
    guard = Middleware(HostGuard, policy=policy, outputs=studio.settings.outputs if per_user else None)
    demo, launch_kwargs = build_ui(studio, max_queue=args.max_queue)
    print(f"CamI2V Studio on http://{args.host}:{args.port}{args.root_path or ''}/")
    if is_loopback(args.host):
        print(f"From your laptop: ssh -L {args.port}:localhost:{args.port} USER@{socket.gethostname()} "
              f"then open http://localhost:{args.port}/")
    studio.preload_models()
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        auth=ThrottledLogin(auth) if auth else None,
        app_kwargs={"middleware": [guard]},
        root_path=args.root_path,
        share=args.share,
        show_error=True,
        ssr_mode=False,
        **launch_kwargs,
    )


if __name__ == "__main__":
    main()
