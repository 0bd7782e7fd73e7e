"""The sweep comparison (``python -m fedlab.report``): runs with known metrics in a real SQLite
MLflow store, aggregated over seeds exactly; the paper's numbers found for the paper's settings
only; one-line errors; and, slow, a real sweep that reports on its parent run."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from PIL import Image

from fedlab import paper
from fedlab.report import RunSeries, group, report_sweep
from fedlab.tracking import flatten
from fedlab.tracking.mlflow import MlflowTracker
from fedlab.validation import typed
from tests.conftest import CONF, QUICK, run_cli

# One worker runs the module: its store (a module fixture, seconds to build) is built once.
pytestmark = pytest.mark.xdist_group("report-store")

SWEEP_ID = "multirun/2026-01-01/00-00-00"
BROKEN_SWEEP_ID = "multirun/2026-01-02/00-00-00"
PAPER_2NN = ["model=2nn", "client_optimizer=sgd", "server_optimizer=sgd", "C=0.1", "B=10"]
PAPER_2NN += ["E=1", "target_accuracy=0.97", "rounds=6"]
PAPER_CNN = ["model=cnn", "client_optimizer=sgd", "server_optimizer=sgd", "E=5", "B=10"]
PAPER_CNN += ["rounds=3"]

# Test accuracy at rounds 0..6 of the IID jobs, by seed; the target is 0.97.
IID_CURVES = {
    0: [0.1, 0.5, 0.8, 0.97, 0.975, 0.98, 0.98],  # reaches it at round 3
    1: [0.1, 0.4, 0.7, 0.9, 0.95, 0.971, 0.972],  # at round 5
    2: [0.1, 0.3, 0.6, 0.8, 0.9, 0.95, 0.96],  # never
}
SHARDS_CURVES = {0: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 1: [0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}
MB_PER_ROUND = 2.0


def real_params(*overrides: str) -> dict[str, str]:
    """The params a run with these overrides logs: the composed, validated, flattened config."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = typed(compose("config", overrides=list(overrides)))
    flat = flatten(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))
    return {k: "null" if v is None else str(v) for k, v in flat.items()}


def make_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    params: dict[str, str],
    curve: list[float] | None = None,
    target: float = 0.97,
    status: str = "FINISHED",
    tags: dict[str, str] | None = None,
) -> str:
    """A run as fedlab logs one: params, eval/accuracy and cumulative comm/total_mb per round,
    rounds_to_target once, at the first round the curve reaches ``target``."""
    run = client.create_run(experiment_id, run_name=name, tags=tags or {})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    metrics, now, reached = [], int(time.time() * 1000), False
    for step, accuracy in enumerate(curve or []):
        metrics.append(Metric("eval/accuracy", accuracy, now, step))
        if step:
            metrics.append(Metric("comm/total_mb", MB_PER_ROUND * step, now, step))
        if accuracy >= target and not reached:
            reached = True
            metrics.append(Metric("rounds_to_target", step, now, step))
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.set_terminated(run_id, status=status)
    return run_id


def sweep_parent(client: MlflowClient, experiment_id: str, sweep_id: str, keys: str) -> str:
    tags = {"fedlab.role": "sweep", "fedlab.sweep_id": sweep_id, "fedlab.swept_keys": keys}
    return client.create_run(experiment_id, run_name=f"sweep {sweep_id}", tags=tags).info.run_id


def job_tags(parent: str, sweep_id: str, job: int) -> dict[str, str]:
    return {
        "mlflow.parentRunId": parent,
        "fedlab.role": "job",
        "fedlab.sweep_id": sweep_id,
        "fedlab.job_num": str(job),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store in a directory of its own (``mlflow.db`` there, as fedlab writes it) with:
    experiment ``fedlab``: a sweep over partition × seed (3 IID seeds, 2 shards seeds, a failed
    job and one that logged no test accuracy); ``broken``: a sweep whose jobs all failed;
    ``singles``: runs outside any sweep, two configurations of the paper's CNN."""
    where = tmp_path_factory.mktemp("store")
    client = MlflowClient(tracking_uri=f"sqlite:///{where / 'mlflow.db'}")

    fedlab = client.create_experiment("fedlab")
    parent = sweep_parent(client, fedlab, SWEEP_ID, "partition,seed")
    job = 0
    for partition, curves in (("iid", IID_CURVES), ("shards", SHARDS_CURVES)):
        for seed, curve in curves.items():
            params = real_params(*PAPER_2NN, f"partition={partition}", f"seed={seed}")
            if seed == 1:  # bookkeeping that must not split a configuration
                params["hardware.intra_op_threads"] = "2"
                params["run_name"] = "renamed"
            tags = job_tags(parent, SWEEP_ID, job)
            make_run(client, fedlab, f"partition={partition},seed={seed}", params, curve, tags=tags)
            job += 1
    failed = make_run(
        client,
        fedlab,
        "partition=shards,seed=2",
        real_params(*PAPER_2NN, "partition=shards", "seed=2"),
        [0.1, 0.2],
        status="FAILED",
        tags={**job_tags(parent, SWEEP_ID, job), "fedlab.failure": "DivergedError: diverged"},
    )
    assert failed
    make_run(
        client,
        fedlab,
        "partition=iid,seed=3",
        real_params(*PAPER_2NN, "partition=iid", "seed=3"),
        None,
        tags=job_tags(parent, SWEEP_ID, job + 1),
    )

    broken = client.create_experiment("broken")
    parent = sweep_parent(client, broken, BROKEN_SWEEP_ID, "C")
    for job, fraction in enumerate(("0.1", "0.2")):
        params = real_params(*PAPER_2NN, f"C={fraction}")
        tags = job_tags(parent, BROKEN_SWEEP_ID, job)
        make_run(client, broken, f"C={fraction}", params, [0.1], status="FAILED", tags=tags)

    singles = client.create_experiment("singles")
    for fraction, seeds in (("0.1", (0, 1)), ("0.2", (0,))):
        for seed in seeds:
            params = real_params(*PAPER_CNN, f"C={fraction}", f"seed={seed}")
            curve = [0.1, 0.99, 0.995] if seed else [0.1, 0.98, 0.995]
            make_run(client, singles, f"C={fraction}", params, curve, target=0.99)
    sweep_parent(client, singles, "multirun/2026-01-03/00-00-00", "C")  # no jobs: left out
    return where


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["configuration"]: row for row in csv.DictReader(f)}


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 400


def test_sweep_report_aggregates_seeds_and_logs_on_the_parent(store: Path, tmp_path: Path):
    tracker = MlflowTracker(uri=f"sqlite:///{store / 'mlflow.db'}", experiment="fedlab")
    tracker.open_parent(f"sweep {SWEEP_ID}", SWEEP_ID, {})
    out = tmp_path / "report"
    report = report_sweep(tracker, out)

    table = read_csv(out / "summary.csv")
    assert list(table) == ["partition=iid", "partition=shards"]
    iid, shards = table["partition=iid"], table["partition=shards"]
    assert (iid["runs"], iid["seeds"], iid["rounds"]) == ("3", "0 1 2", "6")
    finals = [curve[-1] for curve in IID_CURVES.values()]
    assert float(iid["final_accuracy_mean"]) == pytest.approx(statistics.fmean(finals))
    assert float(iid["final_accuracy_std"]) == pytest.approx(statistics.stdev(finals))
    # Seeds 0 and 1 reached 0.97 at rounds 3 and 5; seed 2 never did and is not averaged in.
    assert iid["reached"] == "2"
    assert float(iid["rounds_to_target_mean"]) == pytest.approx(4.0)
    assert float(iid["rounds_to_target_std"]) == pytest.approx(math.sqrt(2))
    assert float(iid["mb_to_target_mean"]) == pytest.approx(8.0)  # 6 MB and 10 MB
    assert float(iid["mb_to_target_std"]) == pytest.approx(math.sqrt(8))
    assert float(iid["mb_total_mean"]) == pytest.approx(12.0)
    assert float(iid["mb_total_std"]) == 0.0
    # The paper's Table 1: 2NN, E=1, B=10, C=0.1 → 87 rounds IID, 664 non-IID.
    assert (iid["paper_rounds_to_target"], iid["paper_source"]) == ("87", "Table_1")
    assert shards["paper_rounds_to_target"] == "664"
    # One seed renamed, on other hardware: still the same configuration.
    assert (shards["runs"], shards["seeds"], shards["reached"]) == ("2", "0 1", "0")
    assert shards["rounds_to_target_mean"] == shards["mb_to_target_mean"] == ""
    assert float(shards["final_accuracy_mean"]) == pytest.approx(0.75)

    summary = (out / "summary.md").read_text()
    assert "| partition=iid | 0, 1, 2 | 6 |" in summary
    assert "| 4.0 ± 1.4 | 2/3 | 8.0 ± 2.8 | 12.0 ± 0.0 | 87 (Table 1) |" in summary
    assert "| not reached | 0/2 | — |" in summary
    assert "Left out (2 runs)" in summary
    assert "FAILED: DivergedError: diverged" in summary
    assert "no test accuracy logged" in summary
    assert_png(out / "test_accuracy.png")
    assert report.runs == 5

    logged = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "report")}
    assert logged == {"report/test_accuracy.png", "report/summary.md", "report/summary.csv"}


def test_a_sweep_whose_jobs_all_failed_still_gets_a_report(store: Path, tmp_path: Path):
    tracker = MlflowTracker(uri=f"sqlite:///{store / 'mlflow.db'}", experiment="broken")
    tracker.open_parent(f"sweep {BROKEN_SWEEP_ID}", BROKEN_SWEEP_ID, {})
    report_sweep(tracker, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "No finished run with test accuracy" in summary
    assert "Left out (2 runs)" in summary
    assert not (tmp_path / "test_accuracy.png").exists()
    logged = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "report")}
    assert logged == {"report/summary.md", "report/summary.csv"}


def test_cli_compares_single_runs_and_names_the_paper_value(store: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run_cli(
        "--experiment", "singles", "--out", str(out), cwd=store, timeout=300, module="fedlab.report"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Configurations are named by what varies (C); the parent run is no configuration.
    assert "| C=0.1 | 0, 1 | 2 |" in result.stdout
    assert "20 (Table 2); 18 (Table 1)" in result.stdout  # CNN, C=0.1, E=5, B=10, IID
    assert "| C=0.2 | 0 | 2 |" in result.stdout
    assert "Left out" not in result.stdout
    table = read_csv(out / "summary.csv")
    assert table["C=0.1"]["rounds_to_target_mean"] == "1.5"  # seed 0 at round 2, seed 1 at 1
    assert_png(out / "test_accuracy.png")


def series(name: str, **params: str) -> RunSeries:
    base = {"model.name": "2nn", "partition.name": "iid", "C": "0.1", "E": "1", "B": "10"}
    base.update({"seed": "0", "engine": "tff", "run_name": "null", **params})
    return RunSeries(name, name, base, {0: 0.1, 1: 0.5}, {1: 2.0}, None)


def test_configurations_are_named_by_what_tells_them_apart() -> None:
    runs = [
        series("a", **{"partition.name": "iid", "seed": "0"}),
        series("b", **{"partition.name": "iid", "seed": "1", "run_name": "x"}),
        series("c", **{"partition.name": "shards", "B": "null"}),
    ]
    configs = group(runs, ["partition", "seed"])
    assert [(c.label, len(c.runs)) for c in configs] == [
        ("partition=iid", 2),
        ("partition=shards", 1),
    ]
    # Another sweep's runs, differing in C but not in the swept keys: C names them too.
    configs = group([*runs, series("d", C="0.2")], ["partition", "seed"])
    assert [c.label for c in configs] == [
        "partition=iid, C=0.1, B=10",
        "partition=shards, C=0.1, B=∞",
        "partition=iid, C=0.2, B=10",
    ]
    # Bookkeeping (engine) splits runs only when the sweep varies it.
    pair = [series("e", engine="tff"), series("f", engine="fast", seed="1")]
    assert [c.label for c in group(pair, [])] == ["model=2nn, partition=iid, C=0.1, E=1, B=10"]
    assert [c.label for c in group(pair, ["engine"])] == ["engine=tff", "engine=fast"]


def test_an_options_own_keys_do_not_name_configurations_its_name_tells_apart() -> None:
    """Two sweeps' runs in one experiment (no swept keys to go by): each option's own keys
    (FedProx's mu, Dirichlet's alpha) follow its name and stay out of the labels, and keys of
    another option are never named empty; a key varied within one option still names them."""
    dirichlet = {"partition.name": "dirichlet", "partition.alpha": "0.1"}
    shards = {"partition.name": "shards", "partition.shards_per_client": "2"}
    runs = [
        series("a", **shards, **{"algorithm.name": "fedavg"}),
        series("b", **shards, **{"algorithm.name": "fedprox", "algorithm.mu": "0.01"}),
        series("c", **dirichlet, **{"algorithm.name": "fedavg"}),
        series("d", **dirichlet, **{"algorithm.name": "fedprox", "algorithm.mu": "0.01"}),
    ]
    assert [c.label for c in group(runs, [])] == [
        "partition=shards, algorithm=fedavg",
        "partition=shards, algorithm=fedprox",
        "partition=dirichlet, algorithm=fedavg",
        "partition=dirichlet, algorithm=fedprox",
    ]
    more = [*runs, series("e", **shards, **{"algorithm.name": "fedprox", "algorithm.mu": "1"})]
    assert [c.label for c in group(more, [])][1:2] + [group(more, [])[-1].label] == [
        "partition=shards, algorithm=fedprox, algorithm.mu=0.01",
        "partition=shards, algorithm=fedprox, algorithm.mu=1",
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # Table 2: FedSGD and the two cells the issue quotes.
        (["model=cnn", "C=0.1", "E=1", "B=null"], [(626, "Table 2")]),
        (["model=cnn", "C=0.1", "E=1", "B=10", "partition=shards"], [(350, "Table 2")]),
        (["model=cnn", "C=0.1", "E=5", "B=10"], [(20, "Table 2"), (18, "Table 1")]),
        # Table 1: the CNN's half is E=5; the 2NN's is E=1 with a 97% target.
        (["model=cnn", "C=0.0", "E=5", "B=null", "partition=shards"], [(1181, "Table 1")]),
        (["model=cnn", "C=1.0", "E=5", "B=null", "partition=shards"], [(None, "Table 1")]),
        (["model=2nn", "C=0.5", "E=1", "B=10", "target_accuracy=0.97"], [(75, "Table 1")]),
        (["model=2nn", "C=0.5", "E=1", "B=null", "target_accuracy=0.97"], [(None, "Table 1")]),
        # Not the paper's setting: no value.
        (["model=2nn", "C=0.1", "E=1", "B=10"], []),  # 2NN at the CNN's 99% target
        (["model=cnn", "C=0.1", "E=1", "B=10", "server_optimizer=adam"], []),
        (["model=cnn", "C=0.1", "E=1", "B=10", "server_optimizer.lr=0.5"], []),
        (["model=cnn", "C=0.1", "E=1", "B=10", "partition=dirichlet"], []),
        (["model=cnn", "C=0.1", "E=1", "B=10", "partition=shards", "partition.shard_size=100"], []),
        (["model=cnn", "C=0.1", "E=1", "B=10", "num_clients=50"], []),
        (["model=cnn", "C=0.1", "E=2", "B=10"], []),
        (["model=cnn", "C=0.3", "E=5", "B=10"], []),
        (["model=2nn", "C=0.2", "E=1", "B=10", "target_accuracy=0.97", "aggregator=krum"], []),
        (["model=2nn", "C=0.2", "E=1", "B=10", "target_accuracy=0.97", "attack=ipm"], []),
        (
            [
                "model=2nn",
                "C=0.2",
                "E=1",
                "B=10",
                "target_accuracy=0.97",
                "attack=ipm",
                "attack.fraction=0",
            ],
            [(77, "Table 1")],
        ),  # fmt: skip
    ],
)
def test_paper_values_only_for_the_papers_settings(overrides, expected) -> None:
    params = real_params("client_optimizer=sgd", "server_optimizer=sgd", *overrides)
    assert [(v.rounds, v.source) for v in paper.lookup(params)] == expected


@pytest.mark.parametrize(
    ("args", "in_store", "message"),
    [
        ([], False, "no MLflow store at sqlite:///"),
        (["--experiment", "nope"], True, "unknown experiment 'nope'"),
        (["--sweep", "multirun/1999-01-01/00-00-00"], True, "unknown sweep"),
        (["--filter", "params.C = '0.9'"], True, "no runs match"),
        (["--filter", "params.C ~~ 3"], True, "--filter"),
    ],
)
def test_cli_errors_are_one_line(
    store: Path, tmp_path: Path, args, in_store, message, monkeypatch, capsys
) -> None:
    """The first case runs ``python -m fedlab.report`` itself; the others call its ``main`` in
    this process (the same code below the entry point, without importing MLflow again)."""
    from fedlab.report.cli import main

    cwd = store if in_store else tmp_path
    out = ["--out", str(tmp_path / "out")]
    if not args:
        result = run_cli(*out, cwd=cwd, timeout=300, module="fedlab.report")
        code, stderr = result.returncode, result.stderr
    else:
        monkeypatch.chdir(cwd)
        code, stderr = main([*out, *args]), capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedlab.report: error: "), stderr
    assert message in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # an absent store is not created


@pytest.mark.slow
def test_a_real_sweep_reports_on_its_parent_run(tmp_path: Path) -> None:
    result = run_cli(
        "-m",
        *QUICK,
        "rounds=2",
        "partition=iid,shards",
        "seed=0,1",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| partition=iid | 0, 1 | 2 |" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedlab")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`fedlab.role` = 'sweep'"
    )
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {"report/test_accuracy.png", "report/summary.md", "report/summary.csv"}
    local = Path(client.download_artifacts(parent.info.run_id, "report", str(tmp_path / "dl")))
    table = read_csv(local / "summary.csv")
    assert list(table) == ["partition=iid", "partition=shards"]
    for row in table.values():
        assert (row["runs"], row["seeds"], row["rounds"]) == ("2", "0 1", "2")
        assert 0.0 < float(row["final_accuracy_mean"]) <= 1.0
        assert float(row["mb_total_mean"]) > 0
    assert_png(local / "test_accuracy.png")
    sweep_dir = Path(parent.data.tags["fedlab.sweep_id"])
    assert (tmp_path / sweep_dir / "report" / "summary.md").is_file()

    # The CLI finds the same sweep and reports the same table.
    again = run_cli(
        "--sweep", "latest", "--no-log", cwd=tmp_path, timeout=300, module="fedlab.report"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_csv(tmp_path / "report" / "summary.csv") == table


def test_federated_runs_get_the_spread_over_clients(tmp_path: Path) -> None:
    """A federatedly evaluated run's last per-client accuracies, written by the evaluation
    callback as the run ends, come back through MLflow into the report's ECDF figure."""
    from types import SimpleNamespace

    import numpy as np

    from fedlab.callbacks.evaluation import CLIENT_ACCURACY, EvaluationCallback
    from fedlab.evaluation import FederatedEvaluator
    from fedlab.models import build_model

    rng = np.random.default_rng(0)
    x, y = rng.random((30, 4), dtype=np.float32), rng.integers(0, 3, 30).astype(np.int32)
    clients = [np.arange(0, 5), np.arange(5, 15), np.arange(15, 30)]
    evaluator = FederatedEvaluator(build_model("logreg", (4,), 3), x, y, clients, None, None, 0)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("fedlab")
    for seed in (0, 1):
        weights = [rng.standard_normal(w.shape).astype(np.float32) for w in evaluator.model.weights]
        loss, accuracy, extra = evaluator(weights)
        params = real_params(*PAPER_2NN, f"seed={seed}")
        run_id = make_run(client, experiment, f"seed={seed}", params, [0.1, accuracy])
        client.log_metric(run_id, "eval/client_accuracy_mean", extra["eval/client_accuracy_mean"])
        callback = EvaluationCallback(evaluator, 1, 1, tmp_path / f"out{seed}")
        callback.evaluated_round = 1
        tracker = SimpleNamespace(log_artifact=lambda p, r=run_id: client.log_artifact(r, str(p)))
        callback.on_train_end(SimpleNamespace(tracker=tracker))
        written = json.loads((tmp_path / f"out{seed}" / CLIENT_ACCURACY).read_text())
        # Each client's own share of its test examples predicted right.
        predicted = np.argmax(x @ weights[0] + weights[1], axis=1)
        want = [float(np.mean(predicted[c] == y[c])) for c in clients]
        assert written == {"round": 1, "accuracy": pytest.approx(want)}
    out = tmp_path / "report"
    result = run_cli("--out", str(out), cwd=tmp_path, timeout=300, module="fedlab.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_png(out / "client_accuracy.png")
    assert "![test accuracy over clients](client_accuracy.png)" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_personalized_runs_get_both_ecdfs_and_a_column(tmp_path: Path) -> None:
    """Ditto and FedAvg with the same held-out examples, through the command line: the report
    draws the global model's and each client's own model's ECDFs side by side, and its table
    gets each configuration's personalized accuracy (the runs' last one)."""
    from PIL import Image

    common = [
        "model=logreg", "client_optimizer=sgd", "client_optimizer.lr=0.05",
        "server_optimizer=sgd", "num_clients=10", "C=0.3", "B=20", "holdout=0.2", "rounds=2",
        "tracking.log_model=false",
    ]  # fmt: skip
    for algorithm in ("fedavg", "ditto"):
        done = run_cli(*common, f"algorithm={algorithm}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "fedlab"]
    logged = {
        r.data.params["algorithm.name"]: r.data.metrics["eval/personalized_accuracy"]
        for r in client.search_runs([experiment.experiment_id])
    }
    out = tmp_path / "report"
    result = run_cli("--out", str(out), cwd=tmp_path, timeout=300, module="fedlab.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_png(out / "client_accuracy.png")
    with Image.open(out / "client_accuracy.png") as image:
        assert image.width >= 1500  # two panels side by side (one is 768 pixels wide)
    table = read_csv(out / "summary.csv")
    assert len(table) == 2
    for name, row in table.items():
        algorithm = "ditto" if "ditto" in name else "fedavg"
        assert float(row["personalized_accuracy_mean"]) == pytest.approx(logged[algorithm])
    summary = (out / "summary.md").read_text()
    assert "| personalized accuracy |" in summary
    assert "![test accuracy over clients](client_accuracy.png)" in summary


def test_personalized_records_make_two_panels_and_a_column(tmp_path: Path) -> None:
    """The report's part alone, from RunSeries as reading.py makes them."""
    from PIL import Image

    from fedlab.report.grouping import Report, group
    from fedlab.report.reading import RunSeries
    from fedlab.report.writing import write

    def series(algorithm: str, seed: int, own: list[float], pooled: float) -> RunSeries:
        params = real_params(*PAPER_2NN, f"seed={seed}", f"algorithm={algorithm}")
        return RunSeries(
            run_id=f"{algorithm}{seed}", name=algorithm, params=params,
            accuracy={0: 0.1, 2: 0.8}, total_mb={2: 1.0}, rounds_to_target=None,
            personalized={
                "round": 2, "clients": [0, 1, 2], "personalized": own,
                "global": [0.5, 0.6, 0.7], "pooled": {"personalized": pooled, "global": 0.6},
            },
        )  # fmt: skip

    runs = [
        series("fedavg", 0, [0.5, 0.6, 0.7], 0.6),
        series("ditto", 0, [0.8, 0.9, 0.95], 0.88),
        series("ditto", 1, [0.7, 0.9, 1.0], 0.86),
    ]
    write(Report("test", group(runs), []), tmp_path)
    assert_png(tmp_path / "client_accuracy.png")
    with Image.open(tmp_path / "client_accuracy.png") as image:
        assert image.width >= 1500
    table = {
        name.rsplit("algorithm=", 1)[1]: row
        for name, row in read_csv(tmp_path / "summary.csv").items()
    }
    assert float(table["ditto"]["personalized_accuracy_mean"]) == pytest.approx(0.87)
    assert float(table["fedavg"]["personalized_accuracy_mean"]) == pytest.approx(0.6)
    assert "| final accuracy | personalized accuracy |" in (tmp_path / "summary.md").read_text()


def test_runs_under_attack_get_the_defence_by_attack_table(tmp_path: Path) -> None:
    """Final accuracy by defence x attack (the clean runs as "no attack"), the backdoor's
    success, and a run that diverged under attack shown as such, not averaged in."""
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("fedlab")
    base = ["experiment=byzantine", "rounds=2"]
    finals = {  # (aggregator, attack, fraction) -> final accuracy by seed
        ("mean", "sign_flip", "0"): [0.91, 0.93],
        ("krum", "sign_flip", "0"): [0.89, 0.90],
        ("mean", "sign_flip", "0.3"): [0.20, None],  # seed 1 diverged
        ("krum", "sign_flip", "0.3"): [0.88, 0.86],
        ("mean", "backdoor", "0.3"): [0.90, 0.92],
        ("krum", "backdoor", "0.3"): [0.87, 0.89],
    }
    for (aggregator, attack, fraction), values in finals.items():
        for seed, final in enumerate(values):
            overrides = [f"aggregator={aggregator}", f"attack={attack}"]
            overrides += [f"attack.fraction={fraction}", f"seed={seed}"]
            tags = {"fedlab.diverged": "round 2: train loss is nan"} if final is None else {}
            run_id = make_run(
                client, experiment, " ".join(overrides), real_params(*base, *overrides),
                [0.1, 0.5 if final is None else final], tags=tags,
            )  # fmt: skip
            if attack == "backdoor":
                client.log_metric(
                    run_id,
                    "eval/backdoor_accuracy",
                    0.8 if aggregator == "mean" else 0.1 * (seed + 1),
                )
    out = tmp_path / "report"
    result = run_cli("--out", str(out), cwd=tmp_path, timeout=300, module="fedlab.report")
    assert result.returncode == 0, result.stderr[-3000:]
    text = (out / "summary.md").read_text()
    assert "### model=2nn, partition=iid, malicious fraction 0.3" in text
    assert "| defence | no attack | sign_flip | backdoor |" in text
    assert "| mean | 0.920 ± 0.014 | 0.200 (1/2 div.) | 0.910 ± 0.014 |" in text
    assert "| krum | 0.895 ± 0.007 | 0.870 ± 0.014 | 0.880 ± 0.014 |" in text
    assert "| defence | backdoor |" in text
    assert "| mean | 0.800 ± 0.000 |" in text and "| krum | 0.150 ± 0.071 |" in text
    assert "(1/2 diverged)" in text  # the main table says it too
    assert_png(out / "byzantine.png")


def test_an_optuna_search_is_reported_with_short_labels_beside_the_axes(tmp_path: Path) -> None:
    """An Optuna search has a configuration per trial, named by 17-digit learning rates: the
    report shortens them (as long as that keeps them apart), draws the legend beside the axes,
    not over the curves, and marks the trials a pruner stopped."""
    from fedlab.report.plotting import figure

    rates = [0.0006595565870973196 * 1.7**i for i in range(12)]
    runs = []
    for i, rate in enumerate(rates):
        run = series(f"t{i}", **{"client_optimizer.lr": repr(rate)})
        run.pruned_at = 1 if i % 3 else None
        runs.append(run)
    configs = group(runs, ["client_optimizer.lr"])
    assert configs[0].label == "client_optimizer.lr=0.00066"
    assert len({c.label for c in configs}) == 12
    assert [c.rounds for c in configs[:3]] == ["1", "1 (pruned)", "1 (pruned)"]

    fig = figure(configs)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert legend.get_window_extent().x0 > ax.get_window_extent().x1  # beside, not over
    labels = [t.get_text() for t in legend.get_texts()]
    assert "pruned (Optuna)" in labels and max(map(len, labels)) < 40
    # Few short labels stay inside, where the plot has room.
    fig = figure(group(runs[:2], ["client_optimizer.lr"]))
    fig.canvas.draw()
    (ax,) = fig.axes
    inside = ax.get_legend().get_window_extent()
    assert inside.x1 <= ax.get_window_extent().x1

    # Values that 3 significant digits would merge are written in full.
    close = [series("a", C="0.12344"), series("b", C="0.12341")]
    assert [c.label for c in group(close, ["C"])] == ["C=0.12344", "C=0.12341"]


def test_side_by_side_panels_keep_their_legends_below_and_a_line_its_colour() -> None:
    """Two partitions, seven algorithms each: each panel's legend stands below its axes (beside
    the left one it would cover the right panel), and an algorithm has one colour in both."""
    from fedlab.report.plotting import figure

    algorithms = ["fedavg", "fedprox", "scaffold", "fednova", "feddyn", "ditto", "fedper"]
    runs = [
        series(f"{p}-{a}", **{"partition.name": p, "algorithm.name": a})
        for p in ("shards", "dirichlet")
        for a in algorithms
    ]
    fig = figure(group(runs, ["partition", "algorithm"]))
    fig.canvas.draw()
    left, right = fig.axes
    colours = []
    for ax in (left, right):
        box = ax.get_legend().get_window_extent()
        assert box.y1 < ax.get_window_extent().y0  # below the axes, not beside or over them
        assert box.x1 < right.get_window_extent().x0 or ax is right
        colours.append([line.get_color() for line in ax.get_lines()[: len(algorithms)]])
    assert colours[0] == colours[1] and len(set(colours[0])) == len(algorithms)
