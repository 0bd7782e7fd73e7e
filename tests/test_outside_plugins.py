"""Plug-ins from outside fedlab: a user's algorithm, aggregator, callback, model, dataset and
partition, in the user's own package, selected by ``_target_`` from the user's own config folder
(``hydra.searchpath`` or ``fedlab.run(config_dirs=...)``), and checked as fedlab's own are."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import fedlab
from fedlab.algorithms import ALGORITHMS
from fedlab.errors import ConfigError
from tests.conftest import REPO, cli_env, run_cli

PROJECT = REPO / "examples" / "my_fl_project"
# The README's command, small.
EXAMPLE = [
    "dataset=blobs",
    "model=tiny_mlp",
    "algorithm=wd_fedavg",
    "aggregator=uniform_mean",
    "callbacks=with_best_round",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "num_clients=20",
    "C=0.25",
    "rounds=3",
]


@pytest.fixture
def project(monkeypatch) -> Path:
    """The example project importable, as ``python -m fedlab`` run from its folder makes it."""
    monkeypatch.syspath_prepend(str(PROJECT))
    return PROJECT / "conf"


def test_the_example_project_composes_as_its_own_options(project) -> None:
    cfg = fedlab.compose(EXAMPLE, config_dirs=[project])
    assert cfg.algorithm.name == "wd_fedavg" and cfg.algorithm.weight_decay == 1e-4
    assert cfg.algorithm._target_ == "my_fl.algorithms.WeightDecayFedAvg"
    assert cfg.aggregator.name == "uniform_mean" and cfg.model.name == "tiny_mlp"
    assert cfg.dataset.name == "blobs" and cfg.dataset.spread == 0.5
    # fedlab's callbacks, then the project's, under the name its file gives it.
    assert list(cfg.callbacks)[-1] == "best_round"
    assert "evaluation" in cfg.callbacks and "tracking" in cfg.callbacks


def test_the_example_project_runs_through_the_python_api(project, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fedlab.run([*EXAMPLE, "tracking=none"], config_dirs=[project], progress=False)
    accuracy = result.history["eval/accuracy"]
    assert [r for r, _ in accuracy] == [0, 1, 2, 3]
    assert result.rounds == 3 and result.final_accuracy == accuracy[-1][1]
    # The project's callback measured, and fedlab recorded what it measured.
    best = dict(result.history["custom/best_round"])
    for round_num in (1, 2, 3):
        upto = {r: a for r, a in accuracy if r <= round_num}
        assert best[round_num] == max(upto, key=lambda r: (upto[r], -r))
    assert (tmp_path / "checkpoints").is_dir()  # as the command line: checkpoints here


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm=wd_fedavg", "algorithm.weight_decay=-1"], ["weight_decay=-1.0", ">= 0"]),
        (["algorithm=wd_fedavg", "+algorithm.weight_dacay=0.1"], ["did you mean"]),
        (["algorithm=wd_fedavg", "engine=tff"], ["engine=tff", "allowed: engine=fast"]),
        (["dataset=blobs", "model=cnn"], ["model=cnn", "model=2nn|logreg"]),
        (["dataset=blobs", "num_clients=5000"], ["num_clients=5000", "at most 4000"]),
    ],
)
def test_outside_options_are_checked_as_fedlabs_own(project, overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        fedlab.compose(overrides, config_dirs=[project])
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    """A package of its own (not the example's): an aggregator, a callback, a partition, and
    options that are wrong in each way a user can get one wrong."""
    root = _write(
        tmp_path / "src",
        {
            "outside_pkg/__init__.py": "",
            "outside_pkg/plugins.py": """
                from dataclasses import dataclass

                import numpy as np

                from fedlab.aggregators import Aggregator, AggregatorConfig
                from fedlab.callbacks import Callback
                from fedlab.data.partition import Assignment, Partition
                from fedlab.errors import ConfigError


                @dataclass
                class FirstConfig(AggregatorConfig):
                    scale: float = 1.0

                    def __post_init__(self):
                        if self.scale <= 0:
                            bad = f"aggregator.scale={self.scale}"
                            raise ConfigError(f"{bad} is invalid; allowed: > 0")


                class First(Aggregator):
                    '''The first finite client's update, scaled: not robust, but easy to check.'''

                    Config = FirstConfig

                    def aggregate(self, updates, weights):
                        return [u * np.float32(self.cfg.scale) for u in updates[0]]


                class CountRounds(Callback):
                    seen = []

                    def after_round(self, ctx, record):
                        CountRounds.seen.append((record.round, record.clients))


                class Halves(Partition):
                    '''Two halves of the examples in their stored order, then one each.'''

                    @classmethod
                    def split(cls, data, cfg, num_clients, rng):
                        parts = np.array_split(np.arange(data.num_examples), num_clients)
                        return Assignment([p.astype(np.int64) for p in parts])


                class NotAnAggregator:
                    pass
            """,
        },
    )
    conf = _write(
        tmp_path / "conf",
        {
            "aggregator/first.yaml": "_target_: outside_pkg.plugins.First\nscale: 1.0\n",
            "aggregator/wrong_kind.yaml": "_target_: outside_pkg.plugins.NotAnAggregator\n",
            "aggregator/missing.yaml": "_target_: outside_pkg.plugins.Nowhere\n",
            "partition/halves.yaml": "_target_: outside_pkg.plugins.Halves\n",
        },
    )
    monkeypatch.syspath_prepend(str(root))
    return conf


def test_an_outside_aggregator_and_callback_run(outside, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    from outside_pkg.plugins import CountRounds

    CountRounds.seen.clear()
    result = fedlab.run(
        [
            "model=logreg",
            "aggregator=first",
            "aggregator.scale=0.5",
            "+callbacks.count._target_=outside_pkg.plugins.CountRounds",
            "client_optimizer=sgd",
            "server_optimizer=sgd",
            "C=0.03",
            "rounds=2",
            "tracking=none",
            "checkpoint_every=0",
        ],
        config_dirs=[outside],
        progress=False,
    )
    assert CountRounds.seen == [(1, 3), (2, 3)]
    assert result.rounds == 2 and len(result.history["eval/accuracy"]) == 3


def test_an_outside_partition_splits_the_data(outside) -> None:
    from fedlab.data import federate

    overrides = ["model=logreg", "partition=halves", "num_clients=4"]
    with pytest.raises(ConfigError, match="^partition=halves is not an option; allowed: "):
        fedlab.compose(overrides)  # without its config folder
    cfg = fedlab.compose(overrides, config_dirs=[outside])
    data = federate(cfg)
    assert [len(c) for c in data.clients] == [15000] * 4
    assert data.clients[0][0] == 0 and data.clients[3][-1] == 59999


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("aggregator=wrong_kind", ["_target_='outside_pkg.plugins.NotAnAggregator'", "not a"]),
        ("aggregator=missing", ["outside_pkg.plugins.Nowhere", "not found"]),
        (
            "+callbacks.tracking._target_=outside_pkg.plugins.CountRounds",
            ["fedlab's own callback=tracking", "another file name"],
        ),
        ("aggregator=first aggregator.scale=0", ["aggregator.scale=0.0", "> 0"]),
        ("+callbacks.x._target_=nowhere.Thing", ["cannot be imported", "nowhere.Thing"]),
    ],
)
def test_outside_options_that_are_wrong_fail_in_one_line(outside, option, words) -> None:
    with pytest.raises(ConfigError) as info:
        fedlab.compose(["model=logreg", *option.split()], config_dirs=[outside])
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_another_process_finds_an_outside_plugin_from_the_config(project) -> None:
    """A Ray actor receives the run's config, not the registry: the option's ``_target_``
    travels in it and registers the plug-in there (``Registry.of``)."""
    cfg = fedlab.compose(EXAMPLE, config_dirs=[project])
    code = (
        "import pickle, sys\n"
        "from fedlab.algorithms import ALGORITHMS\n"
        "cfg = pickle.loads(sys.stdin.buffer.read())\n"
        "assert 'wd_fedavg' not in ALGORITHMS\n"
        "print(ALGORITHMS.of(cfg.algorithm).__name__, ALGORITHMS.get('wd_fedavg').name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(cfg),
        capture_output=True,
        env={**cli_env(), "PYTHONPATH": f"{PROJECT}:{REPO}"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["WeightDecayFedAvg", "wd_fedavg"]
    assert ALGORITHMS.get("wd_fedavg").__name__ == "WeightDecayFedAvg"


@pytest.mark.slow
def test_the_example_projects_readme_command(tmp_path) -> None:
    """The README's command, from the project's folder, into a store of its own."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        f"hydra.searchpath=[file://{PROJECT / 'conf'}]",
        *EXAMPLE,
        f"tracking.uri={store}",
        f"checkpoint_dir={tmp_path / 'checkpoints'}",
        f"hydra.run.dir={tmp_path / 'outputs'}",
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "After 3 rounds" in result.stdout
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("fedlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["algorithm._target_"] == "my_fl.algorithms.WeightDecayFedAvg"
    assert run.data.params["algorithm.weight_decay"] == "0.0001"
    assert "custom/best_round" in run.data.metrics
