"""scripts/benchmark.py names the CPU its figures come from: they differ several-fold between
CPUs (README, Performance)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

SCRIPT = REPO / "scripts" / "benchmark.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _proc_cpuinfo() -> tuple[str, set[str]]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
    return model, set(flags)


def test_cpu_info_is_this_machines_model_and_vector_extensions() -> None:
    model, flags = _proc_cpuinfo()
    info = _benchmark().cpu_info()
    assert info["model"] == model
    extensions = info["vector_extensions"]
    assert extensions and set(extensions) <= flags
    for known in ("avx2", "avx512f", "amx_tile"):
        assert (known in extensions) == (known in flags), known


@pytest.mark.slow
def test_the_benchmark_json_and_header_name_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--paths", "fast", "--rounds", "1", "--warmup", "0", "--no-ceiling", "--json", out]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    model, _ = _proc_cpuinfo()
    report = json.loads(out.read_text())
    assert report["cpu"]["model"] == model
    assert report["cpu"]["vector_extensions"] == _benchmark().cpu_info()["vector_extensions"]
    machine = next(line for line in done.stdout.splitlines() if line.startswith("machine: "))
    assert model in machine
    assert all(e in machine for e in report["cpu"]["vector_extensions"]), machine


@pytest.mark.slow
def test_the_shakespeare_workload_times_an_lstm_round(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--workload", "shakespeare", "--paths", "fast", "--rounds", "1", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["workload"]["model"] == "char_lstm"
    (row,) = report["paths"]
    assert row["path"] == "fast" and len(row["round_s"]) == 1
    # 10 roles of the Gutenberg texts (each at least one window), FLOPs from the LSTM's shapes.
    assert row["round_examples"][0] >= 10
    assert row["gflops"] > 0 and row["examples_per_s"] > 0
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), "--workload", "shakespeare", "--paths", "reference"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "runs --paths tff,fast only, not reference" in refused.stderr


def test_a_recipe_fedlab_refuses_stops_the_benchmark_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--paths", "fast", "--algorithm", "feddyn", "--no-ceiling"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    message = done.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("benchmark: algorithm=feddyn with server_optimizer=adam"), message


def test_the_benchmark_composes_the_server_optimizer_it_is_given() -> None:
    module = _benchmark()
    args = module.parse_args(
        ["--paths", "fast", "--algorithm", "feddyn", "--server-optimizer", "sgd"]
    )
    overrides = module._overrides("fast", args)
    assert "server_optimizer=sgd" in overrides and "server_optimizer.lr=1.0" in overrides
    module._check_configs(args)  # FedDyn with server SGD at lr 1: allowed
