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


def test_a_worker_that_cannot_start_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """A real worker that exits at start-up: the cached loopback shim (which fedlab preloads
    into the worker) replaced by a library whose constructor exits with status 3, as a broken
    cache would. fedlab says so in one line and leaves no run RUNNING."""
    import sqlite3
    import subprocess

    from tests.conftest import QUICK, run_cli, runtime_error, worker_pids

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    shim = loopback_shim()  # where fedlab looks for it, built into the test's cache
    assert shim is not None and shim.is_relative_to(cache), shim
    source = tmp_path / "exit3.c"
    source.write_text(
        "#include <unistd.h>\n__attribute__((constructor)) static void f(void) { _exit(3); }\n"
    )
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(source)], check=True)

    cwd = tmp_path / "run"
    cwd.mkdir()
    result = run_cli(*QUICK, "rounds=1", cwd=cwd, timeout=300, XDG_CACHE_HOME=str(cache))
    assert result.returncode == 2, result.stderr[-3000:]
    line = runtime_error(result.stderr)
    assert line.startswith("fedlab: error: TFF's worker exited with code 3 at start-up; see ")
    assert line.endswith("tff_worker.log")
    assert not worker_pids(cwd)
    with sqlite3.connect(cwd / "mlflow.db") as conn:
        assert [s for (s,) in conn.execute("select status from runs")] == ["FAILED"]
