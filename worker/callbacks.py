"""Callback URLs: which ones are allowed, and how their bodies are signed.

When ``GDC_CALLBACK_SECRET`` is set, each callback POST carries two headers:

    X-GDC-Timestamp: <unix seconds when it was sent>
    X-GDC-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A receiver recomputes the HMAC over the raw body it got (before parsing the JSON),
compares with ``hmac.compare_digest``, and rejects old timestamps to stop replays:
:func:`verify_signature` does exactly that.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

TIMESTAMP_HEADER = "X-GDC-Timestamp"
SIGNATURE_HEADER = "X-GDC-Signature"


def check_callback_url(url: str, allow_private: bool) -> None:
    """Raise ValueError (user-facing message) unless ``url`` may receive callbacks.

    Loopback, private, link-local and other non-global addresses are refused unless
    ``allow_private``: otherwise a caller could make the workers probe internal services.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"callback_url must be an absolute http(s) URL, got {url!r}")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (socket.gaierror, ValueError) as error:
        raise ValueError(f"callback_url host {parts.hostname!r} does not resolve ({error})") from None
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise ValueError(
                f"callback_url host {parts.hostname!r} is {address}, a loopback or private address; "
                "this server does not call those"
            )


def _digest(body: bytes, secret: str, timestamp: str) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secret: str, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` with ``secret``."""
    timestamp = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: "sha256=" + _digest(body, secret, timestamp)}


def verify_signature(body: bytes, headers, secret: str, tolerance: float = 300) -> bool:
    """Whether ``headers`` sign ``body`` with ``secret`` and were sent within ``tolerance`` seconds."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature, "sha256=" + _digest(body, secret, timestamp))
