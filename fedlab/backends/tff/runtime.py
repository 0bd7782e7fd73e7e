"""TFF's execution runtime, owned by fedlab so that no worker process can outlive a run.

Why this exists (seen on this project's machines; docs/design.md): TFF 0.87's default C++
context starts a ``worker_binary`` subprocess and stops it only from a ``__del__`` that does not
run reliably at interpreter exit; the worker was seen alive at 99% CPU after Python had gone, and
it also survives SIGTERM/SIGKILL of Python. TFF's own launcher also passes ``sys.stdout`` to
Popen, which fails under pytest's capture. So fedlab starts the same binary itself:

- with ``PR_SET_PDEATHSIG=SIGKILL``: the kernel kills the worker when the fedlab process dies, for
  whatever reason (normal exit, exception, Ctrl-C, SIGTERM, even SIGKILL); set by the shim below
  once the worker has started, or, without the shim, by Python between fork and exec;
- stopped explicitly when the ``LocalWorker`` context ends;
- in a session of its own, so a terminal's Ctrl-C reaches fedlab, not the worker;
- its output going to a log file (or nowhere), never to our stdout;
- reached over loopback by a ``tff.framework.RemoteExecutor``.

Exposure: the binary has no bind flag and gRPC binds it to ``[::]:PORT`` (all interfaces),
unauthenticated. fedlab preloads a small shim (``loopback_bind.c``, compiled on first use with the
system's C compiler and cached) that turns that bind into loopback. Without a C compiler the
worker listens on all interfaces for as long as the run lasts, and fedlab warns once.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType

import grpc
import tensorflow_federated as tff

# Internal modules of TFF 0.87 (pinned): the pieces `tff.backends.native` assembles into its
# context. Public `tff.framework.SyncExecutionContext` needs them to compile computations the way
# the native backend does.
from tensorflow_federated.python.core.backends.native import compiler as native_compiler
from tensorflow_federated.python.core.environments.tensorflow_frontend import (
    tensorflow_computation,
)

from fedlab.errors import WorkerError

_PR_SET_PDEATHSIG = 1
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]


def worker_binary_path() -> Path:
    """The C++ worker shipped inside the tensorflow-federated wheel."""
    return Path(tff.__file__).parent / "data" / "worker_binary"


_SHIM_SOURCE = Path(__file__).with_name("loopback_bind.c")


def loopback_shim() -> Path | None:
    """The compiled bind() shim, built on first use and cached; None without a C compiler."""
    source = _SHIM_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedlab"
    built = cache / f"loopback_bind-{digest}.so"
    if built.is_file():
        return built
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / built.name
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(_SHIM_SOURCE), "-ldl"],
            capture_output=True,
        )
        if done.returncode != 0:
            return None
        os.replace(out, built)  # atomic: parallel jobs may build it at once
    return built


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent(parent_pid: int):
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:  # runs in the child, between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class LocalWorker:
    """A TFF C++ worker on this machine, installed as TFF's default context while in use.

    >>> with LocalWorker(env={"CUDA_VISIBLE_DEVICES": "-1"}):
    ...     state = process.initialize()
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._env = {**os.environ, **(env or {})}
        self._log_path = log_path
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> LocalWorker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        binary = worker_binary_path()
        if not binary.is_file():
            raise WorkerError(f"TFF's worker binary is missing at {binary}; reinstall fedlab")
        self.port = _free_loopback_port()
        env = dict(self._env)
        shim = loopback_shim()
        die_with_parent = None
        if shim is not None:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(shim), env.get("LD_PRELOAD")]))
            env["FEDLAB_PARENT_PID"] = str(os.getpid())  # the shim sets PR_SET_PDEATHSIG
        else:
            # No shim: PR_SET_PDEATHSIG from Python between fork and exec (see loopback_bind.c
            # for why the shim does it when it can).
            die_with_parent = _die_with_parent(os.getpid())
            warnings.warn(
                "no C compiler to build fedlab's loopback shim: TFF's worker listens on all "
                "interfaces while this run lasts (see docs/design.md, 'TFF's worker process')",
                stacklevel=2,
            )
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [str(binary), f"--port={self.port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
                # Out of the terminal's process group: Ctrl-C goes to fedlab, which stops the
                # worker itself after marking the run KILLED, instead of the worker dying
                # mid-round and the run failing with a gRPC error.
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        try:
            self._connect()
        except BaseException:
            self.stop()
            raise

    def _wait(self, ready, deadline: float) -> None:
        while not ready():
            if self._process.poll() is not None:
                raise WorkerError(
                    f"TFF's worker exited with code {self._process.returncode} at start-up"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            if time.monotonic() > deadline:
                raise WorkerError(f"TFF's worker did not answer within {self._start_timeout_s} s")
            time.sleep(0.02)

    def _port_open(self) -> bool:
        return self._listening_address() is not None

    def _listening_address(self) -> str | None:
        """Where the worker answers: [::1] (the shim's IPv6 loopback) or 127.0.0.1."""
        for family, host, target in (
            (socket.AF_INET6, "::1", f"[::1]:{self.port}"),
            (socket.AF_INET, "127.0.0.1", f"127.0.0.1:{self.port}"),
        ):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    if sock.connect_ex((host, self.port)) == 0:
                        return target
            except OSError:  # no IPv6 on this machine
                continue
        return None

    def _connect(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        # Probe the port first: a gRPC channel that finds nothing listening backs off for seconds.
        self._wait(self._port_open, deadline)
        self._channel = grpc.insecure_channel(self._listening_address(), _GRPC_OPTIONS)
        stub = tff.framework.RemoteExecutorGrpcStub(self._channel)
        self._wait(lambda: stub.is_ready, deadline)

        def executor_stack(cardinalities):
            # As TFF's own factory: computations with no client argument (initialize) still
            # need a CLIENTS cardinality.
            cardinalities.setdefault(tff.CLIENTS, 0)
            executor = tff.framework.RemoteExecutor(stub)
            executor.set_cardinalities(cardinalities)
            return executor

        context = tff.framework.SyncExecutionContext(
            tff.framework.ResourceManagingExecutorFactory(executor_stack_fn=executor_stack),
            native_compiler.desugar_and_transform_to_native,
            transform_args=tensorflow_computation.transform_args,
            transform_result=tensorflow_computation.transform_result,
        )
        tff.framework.set_default_context(context)
        # The context TFF installed at import is now garbage, in reference cycles. Collect it while
        # the interpreter is whole: left to interpreter exit, its ServiceManager.__del__ finds the
        # `subprocess` module already gone and prints an AttributeError.
        gc.collect()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the worker (SIGINT, as TFF does, then SIGKILL after ``grace_s``)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
