"""What MLflow records of an algorithm: the ``algorithm`` tag names the whole recipe, params hold
the algorithm's and the aggregator's own keys, and algorithm metrics land under ``algorithm/``."""

from __future__ import annotations

import pytest

from fedlab.experiment import algorithm_name, run
from fedlab.tracking.mlflow import MlflowTracker
from tests.conftest import checked

QUICK_RUN = [
    "model=logreg", "client_optimizer=sgd", "client_optimizer.lr=0.1", "num_clients=20",
    "C=0.5", "B=50", "rounds=2", "checkpoint_every=0", "tracking.log_model=false",
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["server_optimizer=sgd"], "FedAvg"),
        (["server_optimizer=sgd", "B=null"], "FedSGD"),
        (["server_optimizer=adam"], "FedAdam"),
        (["algorithm=fedprox", "server_optimizer=sgd"], "FedProx"),
        (["algorithm=fedprox", "server_optimizer=adam"], "FedProx with FedAdam"),
        (["algorithm=scaffold", "server_optimizer=sgdm"], "SCAFFOLD with FedAvgM"),
        (["algorithm=fednova"], "FedNova"),
        (["algorithm=fednova", "server_optimizer=sgdm"], "FedNova with FedAvgM"),
        (["algorithm=feddyn"], "FedDyn"),
        (["aggregator=median", "server_optimizer=sgd"], "FedAvg, coordinate-wise median"),
        (
            ["algorithm=fedprox", "aggregator=trimmed_mean", "server_optimizer=yogi"],
            "FedProx with FedYogi, trimmed mean",
        ),
    ],
)
def test_the_algorithm_tag_names_the_whole_recipe(compose_cfg, overrides, name) -> None:
    assert algorithm_name(checked(*QUICK_RUN, *overrides)) == name


def test_mlflow_records_the_recipe_its_keys_and_its_metrics(tmp_path, compose_cfg) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {}
    for label, overrides in {
        "prox": ["algorithm=fedprox", "algorithm.mu=0.5", "server_optimizer=adam",
                 "aggregator=trimmed_mean", "aggregator.beta=0.2"],
        "scaffold": ["algorithm=scaffold", "server_optimizer=sgd"],
    }.items():  # fmt: skip
        cfg = checked(*QUICK_RUN, *overrides)
        tracker = MlflowTracker(uri=uri, experiment="recipes")
        run(cfg, output_dir=tmp_path / label, tracker=tracker, run_name=label, progress=False)
        runs[label] = tracker.client.get_run(tracker.run_id)
    prox, scaffold = runs["prox"].data, runs["scaffold"].data
    assert prox.tags["algorithm"] == "FedProx with FedAdam, trimmed mean"
    assert (prox.params["algorithm.name"], prox.params["algorithm.mu"]) == ("fedprox", "0.5")
    assert (prox.params["aggregator.name"], prox.params["aggregator.beta"]) == (
        "trimmed_mean",
        "0.2",
    )
    assert not any(key.startswith("algorithm/") for key in prox.metrics)
    assert scaffold.tags["algorithm"] == "SCAFFOLD"
    assert "algorithm.mu" not in scaffold.params
    assert scaffold.metrics["algorithm/control_norm"] > 0
