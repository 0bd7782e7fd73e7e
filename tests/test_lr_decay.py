"""The client learning rate's per-round decay (McMahan et al. 2017, Figure 4's caption: 0.99 per
round for FedAvg, 0.9934 for FedSGD): round r trains with lr * lr_decay**(r - 1), on engine=fast;
the schedule is a function of the round, so a resumed run continues it exactly."""

from __future__ import annotations

import numpy as np
import pytest

import fedlab
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from fedlab.optimizers import optimizer_config
from tests.conftest import checked
from tests.engines import make_fast
from tests.test_fast import _clients


def _at_round(clients: list[ClientWork], round_num: int) -> list[ClientWork]:
    return [
        ClientWork(w.x, w.y, w.order, w.batch_size, w.client_id, w.state, round_num)
        for w in clients
    ]


def test_round_r_trains_with_the_decayed_rate() -> None:
    decayed = optimizer_config("sgd", lr=0.5, lr_decay=0.9)
    assert decayed.learning_rate_at(1) == 0.5
    assert decayed.learning_rate_at(3) == pytest.approx(0.5 * 0.81, rel=1e-6)
    clients = _clients((7, 13, 20), 1, 5, seed=5)
    server = optimizer_config("sgd", lr=1.0)
    for round_num in (1, 3):
        engine = make_fast("logreg", decayed, server, parallel_clients=1)
        rng = np.random.default_rng(round_num)
        start = engine.initialize(
            [rng.normal(0, 0.1, s).astype(np.float32) for s in engine.model.shapes]
        )
        with_decay = engine.next(start, _at_round(clients, round_num))
        flat = optimizer_config("sgd", lr=decayed.learning_rate_at(round_num))
        plain = make_fast("logreg", flat, server, parallel_clients=1)
        without = plain.next(
            plain.initialize(engine.model_weights(start)), _at_round(clients, round_num)
        )
        for a, b in zip(
            engine.model_weights(with_decay.state), plain.model_weights(without.state), strict=True
        ):
            np.testing.assert_array_equal(a, b)
        # The state keeps the base rate: a checkpoint does not depend on the round.
        assert with_decay.state.client_hparams["learning_rate"] == np.float32(0.5)


def test_a_resumed_run_continues_the_schedule(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    common = [
        "model=logreg",
        "client_optimizer=sgd",
        "client_optimizer.lr=0.3",
        "client_optimizer.lr_decay=0.8",
        "server_optimizer=sgd",
        "C=0.05",
        "tracking=none",
        "eval_every=3",
    ]
    straight = fedlab.run([*common, "rounds=3", "checkpoint_dir=straight"], progress=False)
    fedlab.run([*common, "rounds=1", "checkpoint_dir=resumed"], progress=False)
    resumed = fedlab.run([*common, "rounds=3", "checkpoint_dir=resumed"], progress=False)
    assert resumed.final_accuracy == straight.final_accuracy
    (a,) = (tmp_path / "straight").glob("run-*.npz")
    (b,) = (tmp_path / "resumed").glob("run-*.npz")
    with np.load(a) as one, np.load(b) as two:
        for key in one.files:
            if key != "meta":
                np.testing.assert_array_equal(one[key], two[key])


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["client_optimizer.lr_decay=0"], ["client_optimizer.lr_decay=0", "0 < lr_decay <= 1"]),
        (["client_optimizer.lr_decay=1.5"], ["lr_decay=1.5", "0 < lr_decay <= 1"]),
        (["+server_optimizer.lr_decay=0.99"], ["server_optimizer.lr_decay=0.99", "client"]),
        (["client_optimizer.lr_decay=0.99", "engine=tff"], ["engine=tff", "engine=fast"]),
        (
            ["algorithm=scaffold", "client_optimizer.lr_decay=0.99"],
            ["algorithm=scaffold", "lr_decay=1"],
        ),
    ],
)
def test_a_schedule_that_cannot_run_is_refused_in_one_line(overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked("model=2nn", *overrides)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)
