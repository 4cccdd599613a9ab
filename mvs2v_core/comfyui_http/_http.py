"""The HTTP half of the ComfyUI client: one request with retries, JSON bodies, multipart uploads.

Standard library only (``urllib``). Retries with exponential back-off happen only where repeating a
request cannot do anything twice: idempotent requests on a connection failure or a 5xx answer, and
non-idempotent ones (POST /prompt) on a connection failure *before* the server answered.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import MVS2VError

__all__ = ["ComfyUIError", "HTTPStatusError", "Transport", "multipart_body"]


class ComfyUIError(MVS2VError):
    """A ComfyUI server that is down, refused a workflow, lacks a node or model, failed a job or timed out."""


class HTTPStatusError(ComfyUIError):
    """The server answered with an error status; ``status`` and the decoded ``body`` are kept for the caller."""

    def __init__(self, message: str, status: int, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def multipart_body(fields: dict[str, str], file_field: str, filename: str, data: bytes,
                   content_type: str = "application/octet-stream") -> tuple[bytes, str]:
    """``(body, content_type header)`` of a ``multipart/form-data`` form with text fields and one file."""
    boundary = "----mvs2v" + secrets.token_hex(12)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{safe_name}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", errors="replace")


class Transport:
    """Requests to one ComfyUI base URL, with the retry policy above.

    Args:
        url: ``http://host:port`` (a trailing slash is dropped).
        timeout: seconds one request may take (connect + read).
        retries: extra attempts after the first; ``backoff * 2**i`` seconds between them.
    """

    def __init__(self, url: str, timeout: float, retries: int, backoff: float) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ComfyUIError(f"ComfyUI URL {url!r} must look like http://127.0.0.1:8188 (scheme http or https)")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ComfyUIError(f"ComfyUI client: retries ({retries}) and backoff ({backoff}) must be >= 0 and "
                               f"timeout ({timeout}) > 0")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def unreachable(self, reason: Any) -> ComfyUIError:
        return ComfyUIError(f"ComfyUI at {self.url} is not reachable: {reason}; start it or fix the URL")

    def request(self, method: str, route: str, *, body: bytes | None = None, content_type: str | None = None,
                idempotent: bool = True, raw: bool = False, stream_to: Any = None) -> Any:
        """Send one request; the decoded JSON (or text; ``raw``: bytes) of a 2xx answer.

        ``stream_to``: a binary file the answer's body is copied into (returns None). An error
        status raises :class:`HTTPStatusError`; a connection that cannot be made, ComfyUIError.
        """
        headers = {"Content-Type": content_type} if content_type else {}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url + route, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    if stream_to is not None:
                        while chunk := resp.read(1 << 20):
                            stream_to.write(chunk)
                        return None
                    data = resp.read()
                    return data if raw else _decode(data)
            except urllib.error.HTTPError as exc:
                err = HTTPStatusError(f"ComfyUI at {self.url} answered {method} {route} with HTTP {exc.code}",
                                      exc.code, _decode(exc.read() or b""))
                if exc.code < 500 or not idempotent:
                    raise err from None
                last = err
            except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                if not idempotent and not _before_answer(reason):
                    raise self.unreachable(f"{reason} (the request may have reached it; not repeated)") from None
                last = exc
            if stream_to is not None and attempt < self.retries:
                stream_to.seek(0)
                stream_to.truncate()
        if isinstance(last, HTTPStatusError):
            raise last
        raise self.unreachable(getattr(last, "reason", last)) from None

    def get_json(self, route: str) -> Any:
        return self.request("GET", route)

    def post_json(self, route: str, payload: Any, *, idempotent: bool) -> Any:
        return self.request("POST", route, body=json.dumps(payload).encode(), content_type="application/json",
                            idempotent=idempotent)


def _before_answer(reason: Any) -> bool:
    """True when the connection failed before the server could have read the request (safe to repeat)."""
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror)) or (
        isinstance(reason, OSError) and not isinstance(reason, (TimeoutError, socket.timeout, ConnectionResetError)))
