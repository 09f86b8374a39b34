"""Request guards in front of the Gradio app: a Host-header allow-list, per-user file serving,
and a login that slows down password guessing.

* `HostGuard` (ASGI middleware): only requests whose ``Host`` names this server are served.
  A web page on another site can make a browser resolve its own name to 127.0.0.1 (DNS
  rebinding) and then talk to the dashboard through the SSH tunnel; its requests still carry
  the foreign name, so they get ``400 Host not allowed`` and nothing else. Accepted: loopback
  names (localhost, 127.x.x.x, [::1]) on any port, the --host address, the host of
  --root-path when it is a URL, ``*.gradio.live`` with --share, and --allowed-hosts names.
* The same middleware, when runs are per user, answers ``403`` to a file request
  (``/gradio_api/file=...``) for another user's runs folder: Gradio itself serves everything
  under the outputs folder to anyone logged in.
* `ThrottledLogin`: the ``auth`` callable for ``launch``; after `max_failures` wrong passwords
  for a user name (or from anyone, for all names together) it refuses every attempt, right or
  wrong, for `lockout_s` seconds.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from core.runs import USERS_DIR, user_folder

LOOPBACK_NAMES = ("localhost",)


def host_name(header: str) -> str:
    """The name part of a Host header value, lower case, without port or IPv6 brackets."""
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class HostPolicy:
    """Which Host names are this server. `names`: exact names; `suffixes`: e.g. ".gradio.live"."""

    names: set[str] = field(default_factory=set)
    suffixes: tuple[str, ...] = ()

    @classmethod
    def build(cls, host: str | None = None, root_path: str | None = None, allowed: Iterable[str] = (),
              share: bool = False) -> "HostPolicy":
        names = {host_name(a) for a in allowed if a and a.strip()}
        if host and host not in ("0.0.0.0", "::", ""):
            names.add(host_name(host if ":" not in host or host.startswith("[") else f"[{host}]"))
        if root_path and "://" in root_path:
            netloc = urllib.parse.urlsplit(root_path).netloc
            if netloc:
                names.add(host_name(netloc))
        return cls(names, (".gradio.live",) if share else ())

    def allows(self, header: str | None) -> bool:
        if not header:
            return False  # HTTP/1.1 requires Host; a request without one is not a browser's
        name = host_name(header)
        return is_loopback_name(name) or name in self.names or any(name.endswith(s) for s in self.suffixes)


_FILE_ROUTES = ("/gradio_api/file=", "/file=")


def _requested_file(path: str) -> str | None:
    """The file path of a file route, as the route itself will see it (the server has already
    percent-decoded scope["path"] once; decoding again would check a different path)."""
    for marker in _FILE_ROUTES:
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker):]
    return None


def _cookie_user(app: Any, headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie")
    tokens = getattr(app, "tokens", None)
    cookie_id = getattr(app, "cookie_id", None)
    if not raw or tokens is None or cookie_id is None:
        return None
    # parsed by hand: http.cookies stops at the first cookie it dislikes (other localhost apps')
    jar: dict[str, str] = {}
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            jar.setdefault(name, value.strip('"'))
    for key in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if jar.get(key) in tokens:
            return tokens[jar[key]]
    return None


def file_allowed(requested: str, user: str | None, outputs: Path) -> bool:
    """Whether `user` may fetch `requested` as far as per-user runs go: anything outside
    ``<outputs>/users/`` is decided by Gradio's own rules; inside it, only the user's folder."""
    try:
        target = Path(requested).expanduser().resolve()
        users = (Path(outputs) / USERS_DIR).resolve()
    except (OSError, ValueError, RuntimeError):
        return False
    if not target.is_relative_to(users):
        return True
    return user is not None and target.is_relative_to(users / user_folder(user))


class HostGuard:
    """ASGI middleware: the Host allow-list and, with `outputs` set, per-user file serving."""

    def __init__(self, app: Callable, policy: HostPolicy, outputs: Path | None = None):
        self.app = app
        self.policy = policy
        self.outputs = outputs

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.policy.allows(host):
            return await _refuse(scope, receive, send, 400, "Host not allowed: this dashboard answers only to "
                                 "its own address (start it with --allowed-hosts NAME to add one).")
        if self.outputs is not None and scope["type"] == "http":
            requested = _requested_file(scope.get("path", ""))
            if requested is not None and not file_allowed(requested, _cookie_user(scope.get("app"), headers),
                                                         self.outputs):
                return await _refuse(scope, receive, send, 403, "This file belongs to another user's runs.")
        return await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = (message + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ThrottledLogin:
    """`auth(username, password) -> bool` for Gradio's login, with failure throttling.

    Passwords are compared in constant time. `max_failures` wrong attempts for one user name
    within `window_s` lock that name for `lockout_s`; `max_failures * 4` from anyone lock every
    name (guessing user names does not get around it). During a lockout even the right password
    is refused, so a guesser learns nothing.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], *, max_failures: int = 5, window_s: float = 300.0,
                 lockout_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._users = dict(pairs)
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._clock = clock
        self._fails: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, username: str) -> bool:
        now = self._clock()
        with self._lock:
            return any(self._locked_until.get(k, 0.0) > now for k in (username, "*"))

    def __call__(self, username: str, password: str) -> bool:
        now = self._clock()
        with self._lock:
            if any(self._locked_until.get(k, 0.0) > now for k in (username, "*")):
                return False
            expected = self._users.get(username)
            ok = expected is not None and hmac.compare_digest(str(password).encode(), expected.encode())
            if ok:
                self._fails.pop(username, None)
                return True
            for key, limit in ((username, self.max_failures), ("*", self.max_failures * 4)):
                times = [t for t in self._fails.get(key, []) if now - t < self.window_s] + [now]
                self._fails[key] = times
                if len(times) >= limit:
                    self._locked_until[key] = now + self.lockout_s
                    self._fails[key] = []
            return False
