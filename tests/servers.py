"""Real servers for the end-to-end tests: an MLflow tracking server, PostgreSQL, a Ray cluster,
and the private network they share.

Ray binds its services to the machine's routable address and turns 127.0.0.1 into it
(``ray start --node-ip-address=127.0.0.1`` starts on the external IP), and it has no flag to bind
to loopback. So the cluster tests run in a network namespace of their own that holds only a
loopback interface (``private_network``): there the machine's only address is 127.0.0.1, Ray
uses it, and nothing any test starts is reachable from outside the machine. The namespace also
tells exactly which processes the tests started, whatever their process group: a process is
ours if it is in the namespace, and ``processes_in`` finds every one of them (Ray's daemons and
workers change their names and process groups; PostgreSQL daemonizes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, processes

SERVER_START_TIMEOUT = 180  # s; mlflow server took 14-27 s here on 2 idle cores (SQLite)
CLONE_NEWNET = 0x40000000


# --- processes in a group of their own ---------------------------------------------------------


def group_members(pgid: int) -> set[int]:
    """PIDs of the live processes in process group ``pgid`` (zombies, already dead and only
    waiting for init to reap them, do not count)."""
    return {pid for pid, state, _, pgrp in processes() if pgrp == pgid and state != "Z"}


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL if it is still there after ``grace`` s;
    then wait until the group is empty, and fail if it does not empty."""
    pgid = proc.pid  # start_new_session: the leader's PID is the group's ID
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = group_members(pgid)
    if killed or proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not group_members(pgid), f"processes left in group {pgid}: {group_members(pgid)}"
    assert not killed, f"SIGTERM left processes of group {pgid} running: {killed}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# --- a private network -------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _net_namespace() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def processes_in(namespace: str) -> set[int]:
    """PIDs of the live processes whose network namespace is ``namespace``."""
    found = set()
    for pid, state, _, _ in processes():
        if state == "Z" or pid == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == namespace:
                found.add(pid)
        except OSError:
            continue
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def kill_all(pids: set[int], grace: float) -> set[int]:
    """SIGTERM ``pids``, SIGKILL what is left after ``grace`` s; return those that needed it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {pid for pid in alive if _alive(pid)}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def private_network() -> Iterator[str]:
    """Move this (pytest's main) thread into a new network namespace that holds only loopback,
    and back when done. Every process started meanwhile, and its descendants, live there.

    On leaving, every process still in the namespace is a leak: it is stopped, and the test
    fails naming it.
    """
    if os.geteuid() != 0:
        pytest.skip("the cluster tests need root, for a network namespace of their own")
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if _libc.unshare(CLONE_NEWNET) != 0:
        os.close(original)
        pytest.fail(f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}")
    namespace = _net_namespace()
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield namespace
    finally:
        left = {pid: command_line(pid) for pid in processes_in(namespace)}
        kill_all(set(left), grace=10)
        if _libc.setns(original, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original network failed")
        os.close(original)
    assert not left, f"processes outlived the cluster tests: {left}"


# --- the MLflow server -----------------------------------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path


def get(server: Server, endpoint: str, **query: str) -> dict:
    url = f"{server.url}{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def post(server: Server, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{server.url}{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def wait_until_up(server: Server, timeout: float = SERVER_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({server.proc.returncode}):\n{tail(server.log)}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer in {timeout} s:\n{tail(server.log)}")


def start_mlflow_server(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Server:
    """A server started by ``args`` (its own session, output to ``cwd/server.log``), once it
    answers on /health. ``args`` must hold ``--port``."""
    port = args[args.index("--port") + 1]
    log = cwd / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env={**cli_env(), "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until_up(server)
    except BaseException:
        stop_group(proc)
        raise
    return server


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def all_runs(server: Server, experiment: str = "fedlab") -> list[dict]:
    found = get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)
    experiment_id = found["experiment"]["experiment_id"]
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 1000, "run_view_type": "ALL"}
        if token:
            body["page_token"] = token
        page = post(server, "/api/2.0/mlflow/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def metric_steps(server: Server, run_id: str, key: str) -> list[int]:
    history = get(
        server,
        "/api/2.0/mlflow/metrics/get-history",
        run_id=run_id,
        metric_key=key,
        max_results="10000",
    )
    return sorted(m["step"] for m in history.get("metrics", []))


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """Debian's server binaries (/usr/lib/postgresql/VERSION/bin), the newest version."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, run by the ``postgres`` user (initdb
    refuses root), with password (SCRAM) authentication for its superuser ``fedlab``."""

    bindir: Path
    root: Path  # owned by postgres: data/, the socket, the log
    port: int
    password: str
    user: str = "fedlab"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A URL without the password, which clients take from PGPASSWORD."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        return subprocess.run(
            [
                *_as_postgres(),
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-l",
                str(self.root / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=True,
            stdin=subprocess.DEVNULL,
            cwd=self.root,  # one the postgres user may enter
        )

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def server_pids(self) -> set[int]:
        """The postmaster and its backends (their command lines name the data directory only
        for the postmaster; the others are its children)."""
        table = processes()
        data = str(self.root / "data")
        roots = {pid for pid, state, _, _ in table if state != "Z" and data in command_line(pid)}
        return roots | {pid for pid, state, ppid, _ in table if ppid in roots and state != "Z"}


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    bindir = postgres_bindir()
    # Not under pytest's tmp_path: its parents are private to root, and postgres must enter.
    root = Path(tempfile.mkdtemp(prefix="fedlab-pg-", dir="/tmp"))
    password = os.urandom(12).hex()
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    os.chmod(root, 0o700)
    pg = Postgres(bindir, root, free_port(), password)
    started = False
    try:
        subprocess.run(
            [
                *_as_postgres(),
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                pg.user,
                f"--pwfile={root / 'pwfile'}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            stdin=subprocess.DEVNULL,
            cwd=root,
        )
        (root / "pwfile").unlink()
        pg.ctl("start")
        started = True
        yield pg
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                pg.ctl("stop", "-m", "fast")
            left = pg.server_pids()
            kill_all(left, grace=10)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"PostgreSQL left processes running: {left}"


# --- Ray -------------------------------------------------------------------------------------


@dataclass
class RayNode:
    temp_dir: Path  # this node's own; every process of the node names it, or is a child of one
    node_id: str = ""
    # Other strings that name a process of this node: the head's client server names only the
    # GCS address.
    marks: tuple[str, ...] = ()

    def pids(self) -> set[int]:
        table = processes()
        marks = (str(self.temp_dir), *self.marks)
        roots = {
            pid
            for pid, state, _, _ in table
            if state != "Z" and any(mark in command_line(pid) for mark in marks)
        }
        found, frontier = set(roots), set(roots)
        while frontier:  # workers and agents are the raylet's children
            frontier = {pid for pid, state, ppid, _ in table if ppid in frontier and state != "Z"}
            frontier -= found
            found |= frontier
        return found


def ray_env() -> dict[str, str]:
    return cli_env(
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )


def ray_start(node: RayNode, *args: str) -> None:
    """``ray start`` for one node; it starts the node's daemons and returns."""
    node.temp_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            f"--temp-dir={node.temp_dir}",
            "--object-store-memory=100000000",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
            *args,
        ],
        env=ray_env(),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def ray_nodes(address: str) -> list[dict]:
    """``ray.nodes()`` of the cluster, from a driver process of its own."""
    script = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR', "
        "log_to_driver=False); print(json.dumps(ray.nodes()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=ray_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@dataclass
class RayCluster:
    address: str
    head: RayNode
    worker: RayNode


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """A head and a worker node on 127.0.0.1, one CPU each, each with its own temp dir.

    Token authentication is on, as the README asks of a real cluster, with a token of the
    test's own (``RAY_AUTH_TOKEN_PATH``, in this process's environment while the cluster lives,
    so that every node and every fedlab driver started meanwhile has it); ``~/.ray`` is left
    alone.
    """
    base = Path(tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp"))  # short: Unix socket paths
    token = base / "auth_token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    os.environ.pop("RAY_AUTH_TOKEN", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    cluster = RayCluster(address, RayNode(base / "h", marks=(address,)), RayNode(base / "w"))
    try:
        ray_start(
            cluster.head,
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
        )
        ray_start(cluster.worker, f"--address={cluster.address}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = [n for n in ray_nodes(cluster.address) if n["Alive"]]
            if len(alive) == 2:
                break
            time.sleep(1)
        assert len(alive) == 2, alive
        for node in alive:
            for ours in (cluster.head, cluster.worker):
                if str(ours.temp_dir) in node["ObjectStoreSocketName"]:
                    ours.node_id = node["NodeID"]
        assert cluster.head.node_id and cluster.worker.node_id, alive
        yield cluster
    finally:
        for node in (cluster.worker, cluster.head):
            kill_all(node.pids(), grace=15)
        left = cluster.worker.pids() | cluster.head.pids()
        shutil.rmtree(base, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert not left, f"Ray left processes running: { {p: command_line(p) for p in left} }"


# --- a tracking server that refuses some endpoints ---------------------------------------------


@contextlib.contextmanager
def refusing_proxy(server: Server, refused: tuple[str, ...]) -> Iterator[str]:
    """An HTTP proxy in this process in front of ``server`` that answers 404 Not Found to the
    ``refused`` endpoint paths, as a server of an older MLflow without them does, and passes
    every other request through; yields its URL."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.split("?", 1)[0] in refused:
                page = b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>"
                self.send_response(404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            request = urllib.request.Request(
                server.url + self.path,
                data=body if self.command != "GET" else None,
                headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                method=self.command,
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, headers, payload = response.status, response.headers, response.read()
            except urllib.error.HTTPError as err:
                status, headers, payload = err.code, err.headers, err.read()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        def log_message(self, *args) -> None:  # quiet
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
