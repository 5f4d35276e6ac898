"""Which addresses only this machine can reach: the test behind "serve without an
API key only on loopback" (the `serve` command) and the audit's exposed-server check."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for anything else, including
    names and variables we cannot resolve here (they may be public)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
