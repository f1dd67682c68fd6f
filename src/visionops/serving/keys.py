"""Service keys: `VISIONOPS_API_KEY` makes every call but health and docs need one."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from visionops.serving.endpoints import UI

API_KEY_ENV = "VISIONOPS_API_KEY"
# The ZenML secret the deployment pipeline serves its keys from, when it exists
# (`zenml secret create visionops-service --api_key=...`).
API_KEY_SECRET = "visionops-service"
API_KEY_SECRET_KEY = "api_key"
# Open with or without a key: what orchestrators poll (any method), and the pages a
# browser loads before it can send a key (GET, static: no model, no data). Every
# other route, the task endpoints generated per task, `/render` and `/info` (which
# names the model) included, needs a key.
HEALTH = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})
PAGES = frozenset({"/", "/docs", "/docs.json", "/schema.json", UI})
PAGE_PREFIXES = ("/static_content/", f"{UI}/", "/docs/")


def api_keys() -> list[bytes]:
    """The keys `VISIONOPS_API_KEY` holds (comma-separated); none: keys are off."""
    raw = os.environ.get(API_KEY_ENV, "")
    return [key.strip().encode() for key in raw.split(",") if key.strip()]


def is_open(method: str, path: str) -> bool:
    """Whether `method path` is answered without a key."""
    if path in HEALTH:
        return True
    return method in ("GET", "HEAD") and (
        path in PAGES or path.startswith(PAGE_PREFIXES)
    )


def key_matches(sent: bytes, keys: list[bytes]) -> bool:
    """Whether `sent` is one of `keys`, compared in constant time (every key is
    compared, so the time says nothing about which one came close)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(sent, key)
    return found


class ApiKeys:
    """ASGI middleware: with keys set, a request outside `is_open` needs
    `Authorization: Bearer <key>`; 401 without one, 403 with a wrong one, in the
    service's error shape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Read per request (a few microseconds): the service's keys are the
        # environment's, and the tests switch them on and off in one process.
        keys = api_keys() if scope["type"] in ("http", "websocket") else []
        if not keys or is_open(scope.get("method", ""), scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        scheme, _, sent = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not sent.strip():
            status = 401
            message = (
                "This service needs a key: send it as the header "
                "`Authorization: Bearer <key>`."
            )
        elif not key_matches(sent.strip(), keys):
            status = 403
            message = (
                "The key sent in `Authorization` is not one of this service's keys."
            )
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # refused before it is accepted
            await send({"type": "websocket.close", "code": 1008, "reason": message})
        else:
            await _refuse(send, status, message)


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="visionops"'),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
