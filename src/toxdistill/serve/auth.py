"""API keys: who may use the models of a server that others can reach.

With keys, every ``/api/*`` request and ``/metrics`` need ``Authorization: Bearer KEY`` (checked by
``RequireKey`` before any route reads the body); the page's two forms, which run models too, take the key
from the same header or from their ``api_key`` field (``page_key_ok``). ``/healthz`` stays open for load
balancers, and so do the pages that only show what the run publishes (the form itself, the model cards,
``/docs`` and ``/openapi.json``).

Nothing here imports FastAPI: the CLI reads the key file, and fails with one line, before the web stack loads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from toxdistill.errors import ToxdistillError

ENV_VAR = "TOXDISTILL_API_KEYS"
# What a Bearer token can carry in a header without quoting: visible ASCII, no spaces.
_KEY = re.compile(r"[\x21-\x7e]+")
MAKE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
GUARDED_PREFIX = "/api/"
GUARDED_PATHS = ("/api", "/metrics")
REALM = 'Bearer realm="toxdistill"'


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The accepted keys, kept only as SHA-256 digests: every comparison is between equal-length values, and
    a memory dump or a repr shows no key."""

    def __init__(self, keys: Iterable[str], source: str = "keys"):
        self._digests = tuple(dict.fromkeys(_digest(k) for k in keys))
        if not self._digests:
            raise ValueError("ApiKeys needs at least one key")
        self.source = source

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} from {self.source})"

    def check(self, key: str | None) -> bool:
        """Whether ``key`` is one of the keys. Every stored digest is compared, in constant time, whatever
        matches: the time taken says nothing about which key, or how much of one, was right."""
        given = _digest(key or "")
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(d, given)
        return ok and bool(key)

    @classmethod
    def from_file(cls, path: str | Path, source: str = "--api-keys") -> ApiKeys:
        """One key per line; blank lines and lines starting with ``#`` are skipped. A file that is missing,
        unreadable, or holds no key is a one-line error naming the file (never a key)."""
        path = Path(path).expanduser()
        where = f"API key file {path} (from {source})"
        fix = f"write one key per line, e.g. {MAKE_KEY} > {path}"
        if not path.exists():
            raise ToxdistillError(f"{where} not found", fix)
        if path.is_dir():
            raise ToxdistillError(f"{where} is a folder, not a file", fix)
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM from a Windows editor is no key character
        except UnicodeDecodeError:
            raise ToxdistillError(f"{where} is not UTF-8 text", fix) from None
        except OSError as e:
            raise ToxdistillError(f"cannot read {where}: {e.strerror or e}", "check its permissions") from None
        keys = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not _KEY.fullmatch(line):
                raise ToxdistillError(
                    f"line {n} of {where} is not a usable key: a key is printable ASCII with no spaces",
                    "put comments on their own line, starting with #",
                )
            keys.append(line)
        if not keys:
            raise ToxdistillError(f"{where} holds no keys (only blank lines or # comments)", fix)
        return cls(keys, str(path))


def keys_from(option: str | None, environ: Mapping[str, str] = os.environ) -> ApiKeys | None:
    """The keys named by ``--api-keys``, else by ``$TOXDISTILL_API_KEYS`` (a path too); None when neither is set."""
    if option:
        return ApiKeys.from_file(option, "--api-keys")
    env = environ.get(ENV_VAR, "").strip()
    return ApiKeys.from_file(env, f"${ENV_VAR}") if env else None


def is_guarded(path: str) -> bool:
    return path in GUARDED_PATHS or path.startswith(GUARDED_PREFIX)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (the scheme in any case), else None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def challenge(key: str | None) -> tuple[str, str]:
    """The 401's message and its ``WWW-Authenticate`` value (RFC 6750: a wrong token is ``invalid_token``)."""
    if key is None:
        return "this server needs an API key: send Authorization: Bearer <key>", REALM
    return "the API key is not valid", f'{REALM}, error="invalid_token"'


class RequireKey:
    """ASGI middleware: a guarded request without a valid key gets 401 with ``{"detail": ...}`` before any
    route runs (so before the body is read or parsed)."""

    def __init__(self, app, keys: ApiKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not is_guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers") or [] if k == b"authorization"), b"")
        key = bearer(header.decode("latin-1"))
        if self.keys.check(key):
            await self.app(scope, receive, send)
            return
        detail, www = challenge(key)
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", www.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def page_key_ok(keys: ApiKeys | None, authorization: str | None, form_key: str) -> bool:
    """Whether a page form may run a model: no keys configured, or a valid key in the header or the form."""
    if keys is None:
        return True
    return keys.check(bearer(authorization)) or keys.check(form_key.strip() or None)
