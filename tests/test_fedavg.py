"""TFF's FedAvg, as fedlab drives it, against numbers computed by hand (as fedjax's
fed_avg_test does): one round on two tiny clients of unequal sizes must equal local SGD on each
client followed by the example-weighted average of the client updates."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.backends.tff import LocalWorker
from fedlab.core.types import ClientWork
from fedlab.optimizers import optimizer_config
from tests.conftest import worker_pids
from tests.engines import make_tff


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _local_sgd(w, b, x, y, order, batch, lr):
    """Mini-batch SGD on the mean softmax cross-entropy of a linear model, in float64."""
    w, b = w.astype(np.float64).copy(), b.astype(np.float64).copy()
    for epoch in order:
        for start in range(0, len(epoch), batch):
            idx = epoch[start : start + batch]
            p = _softmax(x[idx] @ w + b)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            w -= lr * x[idx].T @ p / len(idx)
            b -= lr * p.mean(axis=0)
    return w, b


def _clients(batch_size: int | None) -> list[ClientWork]:
    rng = np.random.default_rng(0)
    made = []
    for n in (7, 13):  # unequal sizes: the average must be weighted by examples
        x = rng.random((n, 784), dtype=np.float32)
        y = rng.integers(0, 10, n).astype(np.int32)
        order = np.stack([rng.permutation(n) for _ in range(2)])  # E = 2
        made.append(ClientWork(x, y, order, batch_size))
    return made


# B=5 leaves short last batches; B=None is the full local dataset (the paper's B=∞).
@pytest.mark.parametrize("batch_size", [5, None], ids=["B=5", "B=inf"])
def test_one_round_equals_weighted_average_of_local_sgd(batch_size: int | None) -> None:
    clients = _clients(batch_size)
    # A server lr other than 1 checks that the server step is applied, not just the average.
    client_lr, server_lr = 0.1, 0.5
    algorithm = make_tff(
        "logreg",
        optimizer_config("sgd", lr=client_lr),
        optimizer_config("sgd", lr=server_lr),
    )
    rng = np.random.default_rng(1)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    with LocalWorker() as worker:
        pid = worker.pid
        assert pid in worker_pids()
        state = algorithm.initialize([w0, b0])
        out = algorithm.next(state, clients)
        w1, b1 = algorithm.model_weights(out.state)
    assert pid not in worker_pids()  # the worker is gone once the context ends

    deltas, weights = [], []
    for c in clients:
        wk, bk = _local_sgd(w0, b0, c.x, c.y, c.order, c.batch_size or len(c.x), client_lr)
        deltas.append((wk - w0, bk - b0))
        weights.append(c.order.size)  # examples seen: E * n
    total = sum(weights)
    expected_w = (
        w0 + server_lr * sum(n * d[0] for n, d in zip(weights, deltas, strict=True)) / total
    )
    expected_b = (
        b0 + server_lr * sum(n * d[1] for n, d in zip(weights, deltas, strict=True)) / total
    )
    # float32 TFF against float64 numpy over 2 epochs of short batches: round-off is ~1e-7.
    np.testing.assert_allclose(w1, expected_w, atol=1e-5, rtol=0)
    np.testing.assert_allclose(b1, expected_b, atol=1e-5, rtol=0)
    # And the update is not trivially zero.
    assert np.abs(w1 - w0).max() > 1e-3
    assert out.examples_trained == out.examples_expected == 2 * (7 + 13)
    assert not out.update_skipped
    assert np.isfinite(out.train_loss) and 0.0 <= out.train_accuracy <= 1.0


def test_state_round_trips_and_a_foreign_state_is_refused() -> None:
    sgd = optimizer_config("sgd", lr=0.1)
    adam = optimizer_config("adam", lr=1e-3)
    fedadam = make_tff("logreg", sgd, adam)
    fedavg = make_tff("logreg", sgd, sgd)
    with LocalWorker():
        state = fedadam.initialize([np.ones((784, 10), np.float32), np.zeros(10, np.float32)])
        arrays = fedadam.state_arrays(state)
        back = fedadam.state_arrays(fedadam.state_from_arrays(arrays))
        assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
        assert (fedadam.model_weights(fedadam.state_from_arrays(arrays))[0] == 1.0).all()
        with pytest.raises(ValueError, match="arrays"):
            fedavg.state_from_arrays(arrays)  # FedAvg has no Adam moments to restore
