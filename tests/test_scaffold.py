"""SCAFFOLD (``fedlab/algorithms/scaffold.py``) against an independent NumPy implementation of
Karimireddy et al. 2020, Algorithm 1 with option II, on tiny clients over several rounds (so that
the clients' control variates carry from round to round), to float32 round-off; its client
state through checkpoint and resume; and its one-line refusals.

Tolerance: ``atol=1e-5`` on weights and control variates of order 0.01-1. The engine computes
in float32 and the reference in float64; they differ by the float32 round-off of a few dozen
steps (seen: below 1e-6). A wrong sign, scale (1/N, 1/(K*lr)) or a control variate not carried
over moves them by more than 1e-3 here.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from tests.conftest import (
    assert_extending_equals_straight,
    assert_refused,
    checked,
    checkpoint_arrays,
)
from tests.engines import make_fast
from tests.test_fast import O, opt


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _grad(w, b, x, y):
    p = _softmax(x @ w + b)
    p[np.arange(len(y)), y] -= 1.0
    return x.T @ p / len(y), p.mean(axis=0)


class ReferenceScaffold:
    """Algorithm 1 (option II) for a linear softmax model, in float64, with the server step of
    fedlab's recipe: ``x <- x - eta_g * sum_i n_i (x - y_i) / sum_i n_i``."""

    def __init__(self, w, b, num_clients: int, lr: float, server_lr: float) -> None:
        self.x = [w.astype(np.float64), b.astype(np.float64)]
        self.c = [np.zeros_like(a) for a in self.x]
        self.c_i = {}
        self.n, self.lr, self.server_lr = num_clients, lr, server_lr

    def round(self, clients: list[ClientWork]) -> None:
        updates, weights, deltas = [], [], []
        for work in clients:
            c_i = self.c_i.get(work.client_id, [np.zeros_like(a) for a in self.x])
            y = [a.copy() for a in self.x]
            steps = 0
            for epoch in work.order:
                for start in range(0, len(epoch), work.batch_size):
                    idx = epoch[start : start + work.batch_size]
                    g = _grad(y[0], y[1], work.x[idx].astype(np.float64), work.y[idx])
                    y = [
                        a - self.lr * (gg - ci + cc)
                        for a, gg, ci, cc in zip(y, g, c_i, self.c, strict=True)
                    ]
                    steps += 1
            new_c_i = [
                ci - cc + (xx - yy) / (steps * self.lr)
                for ci, cc, xx, yy in zip(c_i, self.c, self.x, y, strict=True)
            ]
            deltas.append([n - o for n, o in zip(new_c_i, c_i, strict=True)])
            self.c_i[work.client_id] = new_c_i
            updates.append([xx - yy for xx, yy in zip(self.x, y, strict=True)])
            weights.append(work.order.size)
        total = sum(weights)
        mean = [
            sum(n * u[k] for n, u in zip(weights, updates, strict=True)) / total for k in range(2)
        ]
        self.x = [xx - self.server_lr * m for xx, m in zip(self.x, mean, strict=True)]
        self.c = [cc + sum(d[k] for d in deltas) / self.n for k, cc in enumerate(self.c)]


def _client(client_id: int, n: int, seed: int, epochs: int = 2, batch: int = 4) -> ClientWork:
    rng = np.random.default_rng([seed, client_id])
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    return ClientWork(x, y, order, batch, client_id)


SIZES = {0: 7, 1: 13, 2: 10, 3: 5}  # the clients' numbers of examples in the rounds below


def returning_rounds(engine, state, reference, schedule, sizes=SIZES):
    """Rounds of ``engine`` and of an independent ``reference`` (its ``round(work)``) over the
    same clients: round r trains the clients ``schedule[r - 1]``, each from the state the engine
    gave it when it last trained (SCAFFOLD's c_i, FedDyn's g_i, Ditto's v_k, FedPer's head), so
    that returning clients carry theirs over. Yields, after each round, the engine's state, its
    output, the client-state store and the round's clients, for the caller to compare."""
    store: dict[int, list[np.ndarray]] = {}
    for round_num, ids in enumerate(schedule, start=1):
        work = [_client(i, sizes[i], seed=round_num) for i in ids]
        work = [ClientWork(w.x, w.y, w.order, w.batch_size, w.client_id, store.get(w.client_id))
                for w in work]  # fmt: skip
        out = engine.next(state, work)
        reference.round(work)
        state = out.state
        store.update(out.client_states)
        assert sorted(out.client_states) == sorted(ids)
        yield state, out, store, ids


def test_scaffold_equals_algorithm_1_over_rounds() -> None:
    lr, server_lr, num_clients = 0.1, 1.0, 4
    engine = make_fast(
        "logreg", opt(O.sgd, lr), opt(O.sgd, server_lr), parallel_clients=1,
        algorithm="scaffold", num_clients=num_clients,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    reference = ReferenceScaffold(w0, b0, num_clients, lr, server_lr)
    # Clients 0 and 1 come back: their control variates must carry over.
    schedule = [(0, 1, 2), (0, 1, 3), (1, 2, 3)]
    initial = engine.initialize([w0, b0])
    for state, out, store, ids in returning_rounds(engine, initial, reference, schedule):
        for got, want in zip(engine.model_weights(state), reference.x, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for got, want in zip(state.algorithm["control"], reference.c, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for i in ids:
            for got, want in zip(store[i], reference.c_i[i], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert out.algorithm_metrics["control_norm"] == pytest.approx(
            np.sqrt(sum(np.sum(a**2) for a in reference.c)), rel=1e-4
        )
    assert max(np.abs(a).max() for a in reference.c) > 1e-3  # the variates did something


def test_scaffold_state_round_trips_with_its_control_variate() -> None:
    engine = make_fast("logreg", opt(O.sgd, 0.1), opt(O.sgd, 1.0), parallel_clients=1,
                       algorithm="scaffold", num_clients=3)  # fmt: skip
    state = engine.initialize([np.zeros((784, 10), np.float32), np.zeros(10, np.float32)])
    state = engine.next(state, [_client(0, 6, seed=1), _client(1, 9, seed=1)]).state
    arrays = engine.state_arrays(state)
    back = engine.state_from_arrays(arrays)
    for a, b in zip(back.algorithm["control"], state.algorithm["control"], strict=True):
        np.testing.assert_array_equal(a, b)
    fedavg = make_fast("logreg", opt(O.sgd, 0.1), opt(O.sgd, 1.0), parallel_clients=1)
    with pytest.raises(ValueError, match="arrays"):
        fedavg.state_from_arrays(arrays)  # FedAvg's state has no control variate


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm=scaffold", "engine=tff", "client_optimizer=sgd"],
         ["algorithm=scaffold", "engine=tff", "TFF 0.87 has no SCAFFOLD", "allowed: engine=fast"]),
        (["algorithm=scaffold", "client_optimizer=adam"],
         ["algorithm=scaffold needs client_optimizer=sgd", "client_optimizer=adam"]),
    ],
    ids=["tff", "client-adam"],
)  # fmt: skip
def test_scaffold_refusals_are_one_line(compose_cfg, overrides, words) -> None:
    assert_refused(overrides, words)


def test_scaffold_doubles_what_is_communicated(tmp_path, compose_cfg) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    logged = {}
    for algorithm in ("fedavg", "scaffold"):
        cfg = checked(
                f"algorithm={algorithm}",
                "model=logreg",
                "client_optimizer=sgd",
                "client_optimizer.lr=0.1",
                "server_optimizer=sgd",
                "rounds=1",
                "C=0.05",
                "tracking=none",
                "checkpoint_every=0",
            )  # fmt: skip
        tracker = RecordingTracker()
        run(cfg, output_dir=tmp_path / algorithm, tracker=tracker, progress=False)
        logged[algorithm] = {key: value for (key, step), value in tracker.metrics.items()}
    for key in ("comm/broadcast_mb", "comm/uploaded_mb", "comm/total_mb"):
        assert logged["scaffold"][key] == pytest.approx(2 * logged["fedavg"][key], rel=1e-12)
    assert logged["scaffold"]["algorithm/control_norm"] > 0
    assert "algorithm/control_norm" not in logged["fedavg"]


# -- client state through checkpoint and resume ----------------------------------------------

SCAFFOLD_RUN = [
    "algorithm=scaffold", "model=2nn", "client_optimizer=sgd", "client_optimizer.lr=0.05",
    "server_optimizer=sgd", "num_clients=20", "C=0.1", "B=50", "tracking.log_model=false",
]  # fmt: skip


def checkpoint_round(path) -> int:
    import json

    with np.load(path) as npz:
        return int(json.loads(str(npz["meta"]))["round"])


def test_extending_a_scaffold_run_equals_running_it_straight(tmp_path) -> None:
    _, files = assert_extending_equals_straight(
        tmp_path, *SCAFFOLD_RUN, "tracking=none", "eval_every=2"
    )
    assert len(files) > 5  # the server state and the control variates of the clients that trained


@pytest.mark.slow
def test_sigkill_then_resume_keeps_scaffold_bit_identical(tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env, only_run, run_cli
    from tests.test_resume import _series

    args = [*SCAFFOLD_RUN, "rounds=40"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir()
    resumed.mkdir()
    assert run_cli(*args, cwd=straight).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedlab", *args], cwd=resumed, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        # The checkpoint says how far the run is (reading MLflow's new store here could race
        # the run's own creation of it).
        saved = list((resumed / "checkpoints").glob("run-*.npz"))
        try:
            if saved and checkpoint_round(saved[0]) >= 5:
                break
        except (OSError, ValueError, KeyError):
            pass  # being replaced right now
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    again = run_cli(*args, cwd=resumed)
    assert again.returncode == 0, again.stderr[-3000:]
    client, run = only_run(resumed)
    ref_client, ref_run = only_run(straight)
    assert _series(client, run.info.run_id) == _series(ref_client, ref_run.info.run_id)
    a, b = checkpoint_arrays(straight), checkpoint_arrays(resumed)
    assert sorted(a) == sorted(b)
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y)
