"""What every answer tells the browser (``SecurityHeaders``), and who may use a server that has no API keys
(``SameOriginOnly``).

Without keys nothing stops another web site from using the models through the visitor's browser: a page can
post a form to ``http://localhost:5000/`` (cross-site request), or point a name it controls at 127.0.0.1 and
then read the answers as its own origin (DNS rebinding). So a keyless server answers only requests whose
``Host`` is a loopback name, and refuses state-changing requests that a browser marks as coming from another
site. curl, scripts and the page's own forms send no foreign ``Origin`` and keep working.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page loads only its own /static/app.js and /static/style.css; the result bars and word colours are
# style attributes computed per answer, which style-src-attr allows without allowing <style> or any script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # No other site needs the page's URLs; the page itself keeps its origin, which browsers then send as Origin
    # (with no-referrer, chromium's same-origin form posts say "Origin: null").
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
)
# Methods that change nothing, so a cross-site one is harmless (and a link or an <img> must work).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SecurityHeaders:
    """ASGI middleware: add ``HEADERS`` to every response (errors, 401s and 413s included) that lacks them."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                have = {k.lower() for k, _ in msg.get("headers", [])}
                msg["headers"] = [*msg.get("headers", []), *((k, v) for k, v in HEADERS if k not in have)]
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def is_loopback_host(host: str) -> bool:
    """Whether a ``Host`` header value (any port) names this machine only: ``localhost`` or a loopback address
    (127.0.0.0/8, ``[::1]``). A rebinding attacker's name is never one of them."""
    host = host.strip().lower()
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(scope: Scope, check_host: bool) -> str | None:
    """Why a keyless server refuses this request, or None when it may go on."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    host = headers.get("host", "")
    if check_host and not is_loopback_host(host):
        return f"a server without API keys answers only loopback host names (localhost, 127.0.0.1, [::1]), not {host[:100]!r}"
    if scope["method"] in SAFE_METHODS:
        return None
    fetch_site = headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site == "same-origin":  # set by the browser only, never by a page's script
        return None
    if fetch_site == "cross-site":
        return "cross-site requests are refused by a server without API keys"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin.strip()).netloc.lower() != host.strip().lower():
        return "requests from another origin are refused by a server without API keys"
    return None


class SameOriginOnly:
    """ASGI middleware for a server without API keys: 403 with ``{"detail": ...}`` for what ``refusal`` names,
    before any route runs. ``check_host`` is off only where the server is deliberately open to the network."""

    def __init__(self, app: ASGIApp, check_host: bool = True):
        self.app = app
        self.check_host = check_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        why = refusal(scope, self.check_host) if scope["type"] == "http" else None
        if why is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": why}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
