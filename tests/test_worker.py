"""TFF's worker: reachable from this machine only, and gone with its owner."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from fedlab.backends.tff.runtime import LocalWorker, loopback_shim

_LISTEN = "0A"


def _listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the LISTEN sockets on ``port``, from the kernel's tables."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) != port or fields[3] != _LISTEN:
                continue
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            words = [address[i : i + 8] for i in range(0, width, 8)]
            raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
            found.append(ipaddress.ip_address(raw))
    return found


def test_worker_listens_on_loopback_only() -> None:
    assert loopback_shim() is not None, "this machine has a C compiler: the shim must build"
    with LocalWorker() as worker:
        addresses = _listening_addresses(worker.port)
        assert addresses, f"nothing listens on the worker's port {worker.port}"
        assert all(a.is_loopback for a in addresses), addresses
    assert worker.pid is None  # stopped ...
    assert not _listening_addresses(worker.port)  # ... and its port is closed
