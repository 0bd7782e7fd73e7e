"""Personalized evaluation (``fedlab/callbacks/personalized.py``): each client's own model on
its own test data. The held-out split (``holdout``) against its definition; a Ditto run's logged
``eval/personalized_*`` against an independent NumPy evaluation of the personal models it
checkpointed; the clients and the global model's accuracy against federated evaluation on a
natural dataset; when it is on; and its one-line refusals."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tests.conftest import assert_refused, checked

# -- the held-out split ---------------------------------------------------------------------


def test_hold_out_splits_each_client_apart_and_seeded() -> None:
    from fedlab.data.federate import hold_out

    rng = np.random.default_rng(0)
    clients = [rng.choice(1000, n, replace=False) for n in (1, 2, 5, 10, 600)]
    kept, held = hold_out(clients, 0.2, seed=3)
    for idx, k, h in zip(clients, kept, held, strict=True):
        assert not set(k) & set(h) and sorted([*k, *h]) == sorted(idx)
        n = len(idx)
        assert len(h) == (0 if n == 1 else min(max(int(0.2 * n), 1), n - 1))
        # Both keep the partition's order.
        kept_set = set(k.tolist())
        assert list(k) == [i for i in idx if i in kept_set]
    assert [len(h) for h in held] == [0, 1, 1, 2, 120]
    again, held_again = hold_out(clients, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(held, held_again, strict=True))
    # A client's split depends on the seed and on it alone, not on the other clients.
    _, other_seed = hold_out(clients, 0.2, seed=4)
    assert not np.array_equal(held[4], other_seed[4])
    _, fewer = hold_out(clients[:3] + [clients[4], clients[4]], 0.2, seed=3)
    assert np.array_equal(fewer[4], held[4])  # client 4, whatever client 3 holds
    assert not np.array_equal(fewer[3], held[4])  # the same examples as client 3: another draw


def test_a_run_trains_on_what_it_does_not_hold_out() -> None:
    from fedlab.data import federate

    plain = federate(checked("model=2nn", "num_clients=20"))
    held = federate(checked("model=2nn", "num_clients=20", "holdout=0.25"))
    assert plain.holdout_clients is None and held.holdout_clients is not None
    for everything, train, test in zip(
        plain.clients, held.clients, held.holdout_clients, strict=True
    ):
        assert len(test) == int(0.25 * len(everything))
        assert sorted([*train, *test]) == sorted(everything)
    x, _ = held.client_data(0)
    assert len(x) == len(held.clients[0]) < len(plain.clients[0])


# -- a Ditto run, evaluated again in NumPy ----------------------------------------------------

DITTO = [
    "algorithm=ditto", "algorithm.lam=0.1", "model=logreg", "client_optimizer=sgd",
    "client_optimizer.lr=0.05", "server_optimizer=sgd", "num_clients=10", "C=0.3", "B=20",
    "holdout=0.2", "tracking=none", "eval_every=2", "rounds=3",
]  # fmt: skip


def _latest_client_files(out) -> dict[int, list[np.ndarray]]:
    (path,) = (out / "checkpoints").glob("run-*.npz")
    found = {}
    for file in sorted(path.with_name(path.stem + ".clients").glob("client-*.npz")):
        with np.load(file) as npz:
            found[int(file.name.split("-")[1].split(".")[0])] = [npz[k] for k in sorted(npz.files)]
    return found


def test_ditto_personalized_accuracy_is_each_personal_model_on_its_held_out_examples(
    tmp_path, caplog
) -> None:
    from fedlab.data import federate
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    cfg = checked(*DITTO)
    tracker = RecordingTracker()
    with caplog.at_level(logging.INFO, logger="fedlab.callbacks.personalized"):
        result = run(cfg, output_dir=tmp_path, tracker=tracker, progress=False)
    logged = {k: v for (k, step), v in tracker.metrics.items() if step == 3}
    # Each evaluation says what it found in the job's log (issue 23's "each evaluation").
    said = [r.getMessage() for r in caplog.records if r.name == "fedlab.callbacks.personalized"]
    assert [line.split(":")[0] for line in said] == ["round 0", "round 2", "round 3"], said
    assert f"personalized accuracy {logged['eval/personalized_accuracy']:.4f}" in said[-1]
    assert {(k, step) for (k, step) in tracker.metrics if k == "eval/personalized_accuracy"} == {
        ("eval/personalized_accuracy", 0),
        ("eval/personalized_accuracy", 2),
        ("eval/personalized_accuracy", 3),
    }
    # The independent evaluation: the last global model and the checkpointed personal models.
    (path,) = (tmp_path / "checkpoints").glob("run-*.npz")
    with np.load(path) as npz:
        w, b = npz["state_0000"], npz["state_0001"]
    personal = _latest_client_files(tmp_path)
    assert 0 < len(personal) < 10  # some clients have a model of their own, some do not
    data = federate(cfg)
    right, targets, per_client, per_client_global = 0, 0, [], []
    for client in range(10):
        idx = data.holdout_clients[client]
        x, y = data.x_train[idx].astype(np.float64), data.y_train[idx]
        own_w, own_b = personal.get(client, [w, b])
        hits = np.argmax(x @ own_w + own_b, axis=1) == y
        right, targets = right + hits.sum(), targets + len(y)
        per_client.append(hits.mean())
        per_client_global.append((np.argmax(x @ w + b, axis=1) == y).mean())
    assert logged["eval/personalized_accuracy"] == pytest.approx(right / targets, abs=1e-12)
    assert logged["eval/personalized_accuracy_mean"] == pytest.approx(np.mean(per_client))
    assert logged["eval/personalized_accuracy_p10"] == pytest.approx(np.percentile(per_client, 10))
    assert logged["eval/personalized_global_accuracy_mean"] == pytest.approx(
        np.mean(per_client_global)
    )
    assert logged["eval/personalized_clients"] == 10
    assert logged["eval/personalized_own_models"] == len(personal)
    assert logged["time/personalized_eval_s"] > 0
    # The personal models do something the global one does not (the test could fail).
    assert per_client != per_client_global
    # The artifact for the report: the last evaluation, per client.
    written = json.loads((tmp_path / "personalized_accuracy.json").read_text())
    assert written["round"] == 3 and written["clients"] == list(range(10))
    assert written["personalized"] == pytest.approx(per_client)
    assert written["global"] == pytest.approx(per_client_global)
    assert result.history["eval/personalized_accuracy"][-1] == (3, pytest.approx(right / targets))


def test_fedavg_with_held_out_examples_gets_its_global_models_baseline(tmp_path) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    cfg = checked(
        "model=logreg", "client_optimizer=sgd", "server_optimizer=sgd", "num_clients=10",
        "C=0.3", "holdout=0.2", "tracking=none", "rounds=1", "checkpoint_every=0",
    )  # fmt: skip
    tracker = RecordingTracker()
    run(cfg, output_dir=tmp_path, tracker=tracker, progress=False)
    logged = {k: v for (k, step), v in tracker.metrics.items() if step == 1}
    assert logged["eval/personalized_own_models"] == 0
    assert logged["eval/personalized_accuracy"] == logged["eval/personalized_global_accuracy"]


# -- a natural dataset: the clients' test splits, as federated evaluation sees them ----------


def test_on_natural_clients_it_evaluates_federated_evaluations_clients(tmp_path) -> None:
    """Ditto on Shakespeare's roles: on by default; before any round each client's model is the
    global one, and on the same sampled clients' test splits the global model's accuracy is
    federated evaluation's (the same clients, the same examples)."""
    from types import SimpleNamespace

    from fedlab.callbacks.personalized import PersonalizedCallback
    from fedlab.core.client_state import ClientStateStore
    from fedlab.data import federate
    from fedlab.evaluation import FederatedEvaluator
    from fedlab.experiment import round_parts

    cfg = checked(
        "dataset=shakespeare", "model=char_lstm", "partition=natural", "num_clients=12",
        "algorithm=ditto", "eval_clients=5",
    )  # fmt: skip
    data = federate(cfg)
    parts = round_parts(cfg, data.input_shape, data.num_classes, (80,), data.pad_label)
    store = ClientStateStore(None)
    setup = SimpleNamespace(cfg=cfg, dataset=data, parts=parts, client_states=store,
                            output_dir=tmp_path)  # fmt: skip
    callback = PersonalizedCallback.create(cfg.callbacks["personalized"], setup)
    assert callback is not None
    federated = FederatedEvaluator(
        parts.make_model(), data.x_test, data.y_test, data.test_clients, data.pad_label, 5, cfg.seed
    )
    assert list(callback.clients) == list(federated.clients) and len(callback.clients) == 5
    weights = parts.make_model().get_weights()
    metrics = callback.evaluate(weights, {})
    _, accuracy, extra = federated(weights)
    assert metrics["eval/personalized_global_accuracy"] == pytest.approx(accuracy, rel=1e-9)
    assert metrics["eval/personalized_accuracy"] == pytest.approx(accuracy, rel=1e-9)
    assert metrics["eval/personalized_accuracy_mean"] == pytest.approx(
        extra["eval/client_accuracy_mean"], rel=1e-9
    )
    # A client with a model of its own is evaluated with it: here, zeros everywhere.
    first = int(callback.clients[0])
    zeros = [np.zeros_like(a) for a in weights]
    with_own = callback.evaluate(weights, {first: zeros})
    assert with_own["eval/personalized_own_models"] == 1
    assert with_own["eval/personalized_accuracy"] != metrics["eval/personalized_accuracy"]


# -- when it is on, and the refusals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "on"),
    [
        ([], False),  # FedAvg on MNIST: nothing new to measure, nothing held out
        (["algorithm=ditto"], False),  # no test data of the clients' own, holdout=0
        (["algorithm=ditto", "holdout=0.2"], True),
        (["holdout=0.2"], True),  # FedAvg's baseline on the same held-out examples
        (["algorithm=ditto", "dataset=shakespeare", "model=char_lstm", "partition=natural",
          "num_clients=10"], True),
        (["algorithm=fedavg", "dataset=shakespeare", "model=char_lstm", "partition=natural",
          "num_clients=10"], False),  # federated evaluation already is that
        (["algorithm=fedper", "model=2nn", "dataset=emnist", "partition=natural",
          "num_clients=10"], True),
        (["algorithm=fedper", "model=cifar_cnn", "dataset=cifar100", "partition=natural",
          "num_clients=10"], False),  # its test clients are other clients
        (["algorithm=ditto", "callbacks.personalized.enabled=false"], False),
        (["callbacks.personalized.enabled=true", "holdout=0.1"], True),
    ],
)  # fmt: skip
def test_when_it_is_on(overrides, on) -> None:
    from fedlab.callbacks.personalized import active

    cfg = checked(*overrides)
    assert active(cfg.callbacks["personalized"], cfg) is on


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["holdout=1"], ["holdout=1.0 is invalid", "allowed: 0 <= holdout < 1"]),
        (["holdout=-0.1"], ["holdout=-0.1 is invalid"]),
        (["holdout=nan"], ["holdout=nan is invalid"]),
        (["algorithm=ditto", "callbacks.personalized.enabled=true"],
         ["callbacks.personalized.enabled=true", "dataset=mnist partition=iid have none with "
          "holdout=0", "allowed: holdout=F with 0 < F < 1"]),
        (["algorithm=fedper", "model=cifar_cnn", "dataset=cifar100", "partition=natural",
          "num_clients=10", "callbacks.personalized.enabled=true"],
         ["dataset=cifar100 partition=natural have none with holdout=0"]),
        (["holdout=0.2", "~callbacks.personalized"],
         ["holdout=0.2 holds out training examples that only callbacks.personalized evaluates",
          "allowed: holdout=0"]),
        (["holdout=0.2", "callbacks.personalized.enabled=false"],
         ["holdout=0.2", "callbacks.personalized.enabled=false", "allowed: holdout=0"]),
        (["callbacks.personalized.clients=0"],
         ["callbacks.personalized.clients=0 is invalid", "allowed: an integer >= 1"]),
        (["callbacks.personalized.every=0"], ["callbacks.personalized.every=0 is invalid"]),
    ],
    ids=["one", "negative", "nan", "no-test-data", "cifar100-separate", "callback-dropped",
         "callback-off", "clients-0", "every-0"],
)  # fmt: skip
def test_refusals_are_one_line(overrides, words) -> None:
    assert_refused(overrides, words)


def test_holdout_is_part_of_the_runs_identity_and_the_callbacks_keys_are_not() -> None:
    from fedlab.checkpoint import config_key

    base = config_key(checked("holdout=0.2"))
    assert config_key(checked("holdout=0.3")) != base
    assert config_key(checked("holdout=0.2", "callbacks.personalized.clients=5")) == base


def test_held_out_examples_leave_the_dealt_order_too() -> None:
    """local_order=stored visits a client's examples in the order its partition dealt them: with
    examples held out, that order over what it trains on, and nothing held out."""
    from fedlab.data import federate

    plain = federate(checked("model=2nn", "num_clients=20", "partition=shards"))
    held = federate(checked("model=2nn", "num_clients=20", "partition=shards", "holdout=0.25"))
    for client in range(20):
        dealt = plain.clients[client][plain.stored_order(client)]
        kept = held.clients[client][held.stored_order(client)]
        assert sorted(kept) == sorted(held.clients[client])
        trained = set(held.clients[client].tolist())
        assert list(kept) == [i for i in dealt if i in trained]
