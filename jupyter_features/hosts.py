"""Whether an address means "this machine": what another process may reach depends on it.

A loopback address (``127.0.0.1``, ``localhost``, ``::1``) names the machine of whoever
connects, so a URL holding one means the same server only to processes on this machine.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback", "url_is_loopback"]


def is_loopback(host: str | None) -> bool:
    """``host`` (a name or an IP address, IPv6 with or without brackets) is this machine's loopback."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_is_loopback(url: str) -> bool:
    """The server of ``url`` is reachable only from this machine: a loopback host, or a
    Unix socket (``unix:///path``)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "unix" or is_loopback(parts.hostname)
