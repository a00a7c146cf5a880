"""Names the broker is dialled by: an IP address or a DNS name."""

from __future__ import annotations

import ipaddress


def is_ip_address(name: str) -> bool:
    """Whether `name` is an IPv4 or IPv6 address (as written, not resolved)."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
