"""Shared fixtures: the real config composed by Hydra, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fedlab.config import register_configs

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

register_configs()

# Small, quick settings for runs through the real CLI: the 2NN, 5 clients a round, plain FedAvg.
QUICK = [
    "model=2nn",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "num_clients=100",
    "C=0.05",
    "E=1",
    "B=50",
]


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """Compose conf/config.yaml with overrides, as the CLI does."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m fedlab ARGS`` in ``cwd`` (where its mlflow.db and outputs/ land)."""
    return subprocess.run(
        [sys.executable, "-m", "fedlab", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_pids() -> set[int]:
    """PIDs of every running TFF worker_binary on this machine."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if cmdline.endswith(b"worker_binary"):
            pids.add(int(proc.name))
    return pids


def children(pid: int) -> set[int]:
    """Direct children of ``pid``."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(proc.name))
    return found
