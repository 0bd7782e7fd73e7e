"""A run's lineage in MLflow: the data it trained and was evaluated on as run inputs (name,
source, a digest of what was loaded and how it was partitioned), the source and user tags, a
tag naming its configuration without its seed, and MLflow's system metrics on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedlab.data import federate
from fedlab.data.coded import CodedExamples, encode
from fedlab.experiment import algorithm_name, run
from fedlab.tracking.lineage import CONFIGURATION_TAG, configuration_name
from fedlab.tracking.mlflow import MlflowTracker
from tests.conftest import checked
from tests.test_checkpoint import SMALL  # a small run in this process: the 2NN, engine=fast


def test_a_run_records_its_data_source_user_and_configuration(tmp_path: Path) -> None:
    cfg = checked(*SMALL, "partition=shards")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(cfg, output_dir=tmp_path / "out", tracker=MlflowTracker(uri, "fedlab"),
                 checkpoint_dir=tmp_path / "checkpoints", progress=False)  # fmt: skip
    client = MlflowClient(uri)
    (recorded,) = client.search_runs([client.get_experiment_by_name("fedlab").experiment_id])
    assert recorded.info.run_id in result.location

    inputs = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i
        for i in recorded.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["evaluation", "training"]
    data = federate(cfg)
    training, evaluation = inputs["training"], inputs["evaluation"]
    assert training.dataset.name == "mnist" and training.dataset.digest == data.digest()
    assert evaluation.dataset.digest == data.test_digest()
    assert "mnist" in json.loads(training.dataset.source)["uri"]
    profile = json.loads(training.dataset.profile)
    assert profile["partition"] == "shards" and profile["clients"] == 100
    assert profile["examples"] == 60_000 and profile["partition_seed"] == 0
    assert {t.key: t.value for t in training.tags}["fedlab.partition"] == "shards"
    assert json.loads(evaluation.dataset.profile) == {"examples": 10_000}

    tags = recorded.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    assert tags["mlflow.source.name"]  # the script that called fedlab.run: pytest here
    assert tags[CONFIGURATION_TAG] == configuration_name(cfg, "FedAvg")
    assert not any(k.startswith("system/") for k in recorded.data.metrics)  # off by default


def test_the_configuration_tag_is_equal_across_seeds_only() -> None:
    def name(*overrides: str) -> str:
        cfg = checked(*SMALL, *overrides)
        return configuration_name(cfg, algorithm_name(cfg))

    base = name()
    assert base.startswith("FedAvg · mnist · 2nn · iid · ")
    assert name("seed=7") == base
    assert name("engine=tff", "rounds=9") == base
    assert name("E=5") != base
    assert name("server_optimizer=adam").startswith("FedAdam · ")


def test_the_digest_covers_the_examples_and_the_partition() -> None:
    iid, again = federate(checked(*SMALL)), federate(checked(*SMALL))
    assert iid.digest() == again.digest()  # deterministic in the seed
    assert federate(checked(*SMALL, "partition=shards")).digest() != iid.digest()
    assert federate(checked(*SMALL, "seed=1")).digest() != iid.digest()
    assert iid.test_digest() != iid.digest()


def test_placement_checks_ray_actors_data_with_the_same_digest() -> None:
    """``placement.dataset_digest`` (a Ray actor's data against the server's) is now the
    dataset's own digest, equal to the hash it computed before for plain arrays."""
    import hashlib

    from fedlab.backends.fast.placement import dataset_digest

    data = federate(checked(*SMALL, "partition=shards"))
    before = hashlib.sha256()
    for array in (data.x_train, data.y_train, *data.clients):
        array = np.ascontiguousarray(array)
        before.update(f"{array.dtype}{array.shape}".encode())
        before.update(memoryview(array).cast("B"))
    assert dataset_digest(data) == data.digest() == before.hexdigest()[:16]


def test_coded_examples_are_hashed_without_being_decoded(monkeypatch) -> None:
    import dataclasses

    data = federate(checked(*SMALL))
    x = np.asarray(data.x_train[:1000])
    plain = dataclasses.replace(data, x_train=x, y_train=data.y_train[:1000], clients=[])
    codes = encode(x)
    coded = dataclasses.replace(plain, x_train=CodedExamples(codes))

    def decoded(*args, **kwargs):
        raise AssertionError("the digest decoded every example")

    monkeypatch.setattr(CodedExamples, "__array__", decoded)
    digest = coded.digest()
    assert digest != plain.digest()  # codes and table, not the float32 values
    other = codes.copy()
    other[0, 0] = (int(other[0, 0]) + 1) % 256
    assert dataclasses.replace(plain, x_train=CodedExamples(other)).digest() != digest


def test_system_metrics_need_psutil_and_are_off_by_default() -> None:
    assert checked().tracking.system_metrics is False
    assert checked("tracking.system_metrics=true").tracking.system_metrics is True


@pytest.mark.slow
def test_system_metrics_on_request(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    cfg = checked(*SMALL, "rounds=3", "tracking.system_metrics=true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "fedlab", system_metrics=True)
    run(cfg, output_dir=tmp_path / "out", tracker=tracker,
        checkpoint_dir=tmp_path / "checkpoints", progress=False)  # fmt: skip
    client = MlflowClient(uri)
    (recorded,) = client.search_runs([client.get_experiment_by_name("fedlab").experiment_id])
    assert "system/cpu_utilization_percentage" in recorded.data.metrics
    assert "system/system_memory_usage_megabytes" in recorded.data.metrics
