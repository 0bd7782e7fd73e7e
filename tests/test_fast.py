"""The fast engine (``fedlab.backends.fast``) computes what TFF's ``build_weighted_fed_avg``
computes.

Each test gives both engines the same server state and the same ``ClientWork`` (same clients,
same order of examples, same batch size) and compares what comes out: the whole server state
(global weights and server optimizer state; both engines flatten it in the same order) and the
round's metrics. TFF runs for real, in its worker process (``fedlab.backends.tff.LocalWorker``).

Tolerances, and why:
- Weights and optimizer state, non-adaptive server (SGD, momentum): ``atol=1e-5``. Both engines
  compute in float32; they differ only in the order of the additions inside matmul reductions and
  in the sum over clients, so they agree to a few float32 ulps (eps = 1.2e-7) of values of order
  0.01-1 (seen: <= 1e-7). 1e-5 is the issue's bound for a round of plain SGD, and a real error
  (a wrong sign, weighting, learning rate or a missed step) moves weights by >= 1e-3 here.
- Adaptive server (Adam, Yogi, Adagrad): 99.9% of the weights within 0.1% of the server learning
  rate lr, and all within 5% of it. The server divides the averaged update by its root mean square:
  for a weight whose averaged update is itself at round-off level (client contributions that
  cancel), the step is a ratio of two round-off-dominated numbers, so float32 round-off can move
  it by a visible fraction of lr (one adaptive step moves a weight by at most about lr).
  Elsewhere the engines agree to round-off (seen at lr 1e-2: max 4e-5, 99.9% below 2e-6).
  The optimizer's moments are linear or quadratic in the update: ``rtol=1e-4, atol=1e-7``.
- Metrics: loss ``rtol=1e-5`` (float32 sums of a few dozen batch losses), accuracy ``atol=1e-6``
  (a count divided by a count), examples exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from fedlab.optimizers import OptimizerConfig, optimizer_config
from tests.conftest import QUICK, checked, only_run, run_cli, worker_pids
from tests.engines import make_fast, make_tff, mnist_model

# The optimizer names, read as O.sgd, O.adam in the cases.
O = SimpleNamespace(**{n: n for n in ("sgd", "sgdm", "adam", "yogi", "adagrad")})  # noqa: E741


@pytest.fixture(scope="module")
def tff_worker():
    """One TFF worker for the module's comparisons (building one costs a few seconds)."""
    from fedlab.backends.tff import LocalWorker

    with LocalWorker() as worker:
        yield worker
    assert worker.pid not in worker_pids()


def _clients(sizes, epochs, batch_size, seed, nan_clients=()) -> list[ClientWork]:
    """Random clients of unequal sizes; those in ``nan_clients`` have NaN features, so that
    their update is not finite."""
    rng = np.random.default_rng(seed)
    made = []
    for i, n in enumerate(sizes):
        x = rng.random((n, 784), dtype=np.float32)
        if i in nan_clients:
            x[:] = np.nan
        y = rng.integers(0, 10, n).astype(np.int32)
        order = np.stack([rng.permutation(n) for _ in range(epochs)])
        made.append(ClientWork(x, y, order, batch_size))
    return made


@dataclass(frozen=True)
class Case:
    model: str
    client: OptimizerConfig
    server: OptimizerConfig
    epochs: int
    batch_size: int | None
    sizes: tuple[int, ...] = (7, 13, 20)  # unequal: the mean must be weighted by examples


def opt(name: str, lr: float) -> OptimizerConfig:
    return optimizer_config(name, lr=lr)


CASES = {
    # B=5 leaves short last batches (7, 13); server lr != 1 checks the server step itself.
    "fedavg-sgd-E2-B5": Case("logreg", opt(O.sgd, 0.1), opt(O.sgd, 0.5), 2, 5),
    "fedavgm-B=inf": Case("logreg", opt(O.sgd, 0.1), opt(O.sgdm, 0.5), 1, None),
    "client-adam-server-sgd-E2": Case("2nn", opt(O.adam, 1e-3), opt(O.sgd, 1.0), 2, 4),
    "fedadam-client-adam": Case("2nn", opt(O.adam, 2e-4), opt(O.adam, 1e-2), 2, 4),
    "fedyogi-B3": Case("logreg", opt(O.sgd, 0.1), opt(O.yogi, 1e-2), 1, 3),
    "fedadagrad-client-sgdm-E3": Case("2nn", opt(O.sgdm, 0.05), opt(O.adagrad, 1e-2), 3, 6),
    "client-yogi": Case("logreg", opt(O.yogi, 1e-2), opt(O.sgd, 1.0), 2, 5),
    "client-adagrad": Case("logreg", opt(O.adagrad, 1e-2), opt(O.sgdm, 1.0), 2, 5),
    # The CNN: convolutions, max-pooling, and the fast engine's own convolution gradients.
    "cnn-sgd-E2-B5": Case("cnn", opt(O.sgd, 0.05), opt(O.sgd, 1.0), 2, 5),
    "cnn-notebook-optimizers": Case("cnn", opt(O.adam, 2e-4), opt(O.adam, 1e-3), 1, 5),
}


def _assert_same_state(fast_arrays, tff_arrays, num_weights: int, server: OptimizerConfig):
    assert len(fast_arrays) == len(tff_arrays)
    for got, want in zip(fast_arrays, tff_arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
    adaptive = server.name in (O.adam, O.yogi, O.adagrad)
    weights = [
        (a, b) for a, b in zip(fast_arrays[:num_weights], tff_arrays[:num_weights], strict=True)
    ]
    rest = list(zip(fast_arrays[num_weights:], tff_arrays[num_weights:], strict=True))
    if not adaptive:
        for got, want in weights + rest:
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        return
    diff = np.concatenate([np.abs(a.astype(np.float64) - b).ravel() for a, b in weights])
    assert np.quantile(diff, 0.999) <= 1e-3 * server.lr, np.quantile(diff, 0.999)
    assert diff.max() <= 0.05 * server.lr, diff.max()
    for got, want in rest:
        if got.dtype.kind == "i":
            np.testing.assert_array_equal(got, want)  # Adam's and Yogi's step count
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def _assert_same_metrics(fast_out, tff_out) -> None:
    np.testing.assert_allclose(fast_out.train_loss, tff_out.train_loss, rtol=1e-5)
    np.testing.assert_allclose(fast_out.train_accuracy, tff_out.train_accuracy, atol=1e-6, rtol=0)
    assert fast_out.examples_trained == tff_out.examples_trained
    assert fast_out.examples_expected == tff_out.examples_expected
    assert fast_out.update_skipped == tff_out.update_skipped


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_round_equals_tffs_build_weighted_fed_avg(case: Case, tff_worker) -> None:
    tff_engine = make_tff(case.model, case.client, case.server)
    fast = make_fast(case.model, case.client, case.server, parallel_clients=1)
    rng = np.random.default_rng(3)
    initial = [
        (rng.standard_normal(w.shape) * 0.05).astype(np.float32)
        for w in mnist_model(case.model).get_weights()
    ]
    tff_state = tff_engine.initialize(initial)
    fast_state = fast.initialize(initial)
    num_weights = len(initial)
    _assert_same_state(
        fast.state_arrays(fast_state), tff_engine.state_arrays(tff_state), num_weights, case.server
    )
    # Two rounds, each from the same state: the second round starts from TFF's state (same
    # layout), so that it checks the server optimizer's second step (momentum, Adam's moments
    # and step count) without carrying the first round's round-off.
    for round_num in (1, 2):
        clients = _clients(case.sizes, case.epochs, case.batch_size, seed=round_num)
        tff_out = tff_engine.next(tff_state, clients)
        fast_out = fast.next(fast_state, clients)
        tff_arrays = tff_engine.state_arrays(tff_out.state)
        _assert_same_state(fast.state_arrays(fast_out.state), tff_arrays, num_weights, case.server)
        _assert_same_metrics(fast_out, tff_out)
        assert fast_out.examples_trained == case.epochs * sum(case.sizes)
        moved = max(
            np.abs(a - b).max()
            for a, b in zip(tff_arrays, fast.state_arrays(fast_state), strict=True)
        )
        assert moved > 1e-5  # the round did something the comparison can see
        tff_state = tff_out.state
        fast_state = fast.state_from_arrays(tff_arrays)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel_shape", [(5, 5, 3, 4), (3, 2, 1, 6)])
def test_the_fast_convolution_gradients_equal_tensorflows(padding, kernel_shape) -> None:
    import tensorflow as tf

    from fedlab.backends.fast.functional import conv2d

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((3, 9, 8, kernel_shape[2])), tf.float32)
    kernel = tf.constant(rng.standard_normal(kernel_shape), tf.float32)
    dy = None
    grads = {}
    for name, fn in (("tf", lambda a, k: tf.nn.conv2d(a, k, 1, padding)), ("fast", None)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, kernel])
            out = fn(x, kernel) if fn else conv2d(x, kernel, padding)
            if dy is None:
                dy = tf.constant(rng.standard_normal(out.shape), tf.float32)
            loss = tf.reduce_sum(out * dy)
        grads[name] = (out, *tape.gradient(loss, [x, kernel]))
    for want, got in zip(grads["tf"], grads["fast"], strict=True):
        # sums of up to 3*9*8 products of unit normals: float32 round-off is ~1e-6 of them
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-5, rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        loss = tf.reduce_sum(conv2d(x, kernel, padding, input_grad=False) * dy)
    no_dx, dk = tape.gradient(loss, [x, kernel])
    assert no_dx is None
    np.testing.assert_array_equal(dk.numpy(), grads["fast"][2].numpy())


def test_non_finite_client_updates_are_dropped_as_tff_drops_them(tff_worker) -> None:
    sgd, adam = opt(O.sgd, 0.1), opt(O.adam, 1e-2)
    tff_engine = make_tff("logreg", sgd, adam)
    fast = make_fast("logreg", sgd, adam, parallel_clients=1)
    initial = [w * 0 + 0.01 for w in mnist_model("logreg").get_weights()]
    tff_state, fast_state = tff_engine.initialize(initial), fast.initialize(initial)

    # One client of three diverges: its update and its metrics drop out of the round.
    clients = _clients((7, 13, 20), 2, 5, seed=0, nan_clients=(1,))
    tff_out, fast_out = tff_engine.next(tff_state, clients), fast.next(fast_state, clients)
    _assert_same_metrics(fast_out, tff_out)
    assert fast_out.examples_trained == 2 * (7 + 20) < fast_out.examples_expected
    assert not fast_out.update_skipped and np.isfinite(fast_out.train_loss)
    _assert_same_state(
        fast.state_arrays(fast_out.state), tff_engine.state_arrays(tff_out.state), 2, adam
    )

    # Every client diverges: the mean update is 0/0, and the server step is skipped.
    clients = _clients((7, 13), 1, 5, seed=1, nan_clients=(0, 1))
    tff_out, fast_out = tff_engine.next(tff_state, clients), fast.next(fast_state, clients)
    _assert_same_metrics(fast_out, tff_out)
    assert fast_out.update_skipped and fast_out.examples_trained == 0
    before = fast.state_arrays(fast_state)
    after = fast.state_arrays(fast_out.state)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    _assert_same_state(after, tff_engine.state_arrays(tff_out.state), 2, adam)


def test_state_round_trips_and_a_foreign_state_is_refused() -> None:
    sgd, adam = opt(O.sgd, 0.1), opt(O.adam, 1e-3)
    fedadam = make_fast("logreg", sgd, adam, parallel_clients=1)
    fedavg = make_fast("logreg", sgd, sgd, parallel_clients=1)
    state = fedadam.initialize([np.ones((784, 10), np.float32), np.zeros(10, np.float32)])
    state = fedadam.next(state, _clients((5, 9), 1, 4, seed=0)).state
    arrays = fedadam.state_arrays(state)
    back = fedadam.state_arrays(fedadam.state_from_arrays(arrays))
    assert all(
        np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, back, strict=True)
    )
    assert arrays[-1].dtype == np.int32 and arrays[-1] == 1  # Adam's step count, last as in TFF
    with pytest.raises(ValueError, match="arrays"):
        fedavg.state_from_arrays(arrays)  # FedAvg has no Adam moments to restore
    wrong = list(arrays)
    wrong[0] = wrong[0].astype(np.float64)
    with pytest.raises(ValueError, match="float64"):
        fedadam.state_from_arrays(wrong)
    with pytest.raises(ValueError, match="shapes"):
        fedadam.initialize([np.ones((784, 10), np.float32)])


def test_parallel_clients_give_the_same_round_as_one_at_a_time() -> None:
    sgd, adam = opt(O.adam, 1e-3), opt(O.adam, 1e-3)
    one = make_fast("2nn", sgd, adam, parallel_clients=1)
    two = make_fast("2nn", sgd, adam, parallel_clients=2)
    initial = mnist_model("2nn").get_weights()
    clients = _clients((7, 13, 20, 3, 11), 2, 4, seed=5)
    out_one = one.next(one.initialize(initial), clients)
    out_two = two.next(two.initialize(initial), clients)
    for a, b in zip(one.state_arrays(out_one.state), two.state_arrays(out_two.state), strict=True):
        np.testing.assert_array_equal(a, b)  # each client is computed alone: no round-off
    assert out_one.train_loss == out_two.train_loss


# -- through fedlab's real round loop ---------------------------------------------------------


def _run_both(tmp_path, compose_cfg, *overrides: str) -> dict[str, float]:

    from fedlab.experiment import run

    accuracy = {}
    for engine in ("tff", "fast"):
        cfg = checked(*overrides, f"engine={engine}", "tracking=none", "checkpoint_every=0")
        result = run(cfg, output_dir=tmp_path / engine, progress=False)
        accuracy[engine] = result.final_accuracy
    return accuracy


@pytest.mark.slow
def test_ten_rounds_of_each_engine_reach_the_same_test_accuracy(tmp_path, compose_cfg) -> None:
    # The notebook's optimizers (client Adam 2e-4, server Adam 1e-3) on the 2NN, 10 clients a
    # round: the engines' round-off differences must not change what the model learns.
    acc = _run_both(
        tmp_path,
        compose_cfg,
        "model=2nn",
        "num_clients=100",
        "C=0.1",
        "E=1",
        "B=50",
        "rounds=10",
        "eval_every=10",
    )
    assert acc["tff"] > 0.8  # it learned something
    assert abs(acc["fast"] - acc["tff"]) <= 0.005, acc


@pytest.mark.slow
def test_both_engines_record_the_same_metrics_in_mlflow(tmp_path) -> None:
    recorded = {}
    for engine in ("tff", "fast"):
        cwd = tmp_path / engine
        cwd.mkdir()
        done = run_cli(*QUICK, "rounds=2", f"engine={engine}", cwd=cwd)
        assert done.returncode == 0, done.stderr[-3000:]
        client, run = only_run(cwd)
        steps = {
            key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics
        }
        recorded[engine] = (steps, set(run.data.params), set(run.data.tags) - {"mlflow.runName"})
        assert run.data.tags["engine"] == engine
        assert run.info.status == "FINISHED"
    assert recorded["fast"] == recorded["tff"]
    assert "train/loss" in recorded["fast"][0] and "eval/accuracy" in recorded["fast"][0]


@pytest.mark.slow
def test_a_resumed_fast_run_equals_an_uninterrupted_one(tmp_path) -> None:
    # engine=fast (the default) through the CLI: 2 rounds, then the same command asking for 4
    # continues from the checkpoint; it must end exactly where 4 rounds in one go end.
    fast = [a for a in QUICK if not a.startswith("engine=")] + ["tracking.log_model=false"]
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    whole.mkdir(), pieces.mkdir()
    for cwd, rounds in ((whole, [4]), (pieces, [2, 4])):
        for r in rounds:
            done = run_cli(*fast, f"rounds={r}", cwd=cwd)
            assert done.returncode == 0, done.stderr[-3000:]
    histories = []
    for cwd in (whole, pieces):
        client, run = only_run(cwd)
        assert run.data.tags["engine"] == "fast" and run.info.status == "FINISHED"
        histories.append(
            {
                key: [
                    (m.step, m.value)
                    for m in sorted(
                        client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
                    )
                ]
                for key in ("train/loss", "eval/accuracy", "eval/loss")
            }
        )
    assert histories[0] == histories[1]  # bit for bit, no step missing or repeated
    (a,), (b,) = (list((d / "checkpoints").glob("*.npz")) for d in (whole, pieces))
    with np.load(a) as first, np.load(b) as second:
        assert sorted(first.files) == sorted(second.files)
        for name in first.files:
            if name.startswith("state_"):  # the server state ("meta" names each one's run)
                np.testing.assert_array_equal(first[name], second[name])


def test_the_fast_lstm_and_embedding_equal_keras() -> None:
    """The char LSTM's forward pass and gradients, fast engine's ops against Keras 2.14's own
    layers (small sizes: 3 ids of 12 classes, 5 positions, 7 units)."""
    import tensorflow as tf

    from fedlab.backends.fast.functional import functional_model
    from fedlab.backends.loss import batch_loss

    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            layers.Input(shape=(5,), dtype=tf.float32),
            layers.Embedding(12, 4),
            layers.LSTM(7, return_sequences=True),
            layers.LSTM(7, return_sequences=True),
            layers.Dense(12),
        ]
    )
    fast = functional_model(model)
    rng = np.random.default_rng(0)
    model.set_weights(
        [rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.weights]
    )
    x = tf.constant(rng.integers(0, 12, (3, 5)), tf.float32)
    y = tf.constant(rng.integers(0, 12, (3, 5)), tf.int32)
    y = tf.tensor_scatter_nd_update(y, [[0, 4], [2, 3]], [0, 0])  # two padded targets
    weights = [tf.Variable(w) for w in model.get_weights()]
    with tf.GradientTape(persistent=True) as tape:
        keras_logits = model(x)
        fast_logits = fast.forward(weights, x)
        keras_loss = (
            tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
                y, keras_logits, sample_weight=tf.cast(y != 0, tf.float32)
            )
            * tf.cast(tf.size(y), tf.float32)
            / tf.reduce_sum(tf.cast(y != 0, tf.float32))
        )
        fast_loss = batch_loss(fast_logits, y, 3, 0)[0]
    np.testing.assert_allclose(fast_logits.numpy(), keras_logits.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(fast_loss.numpy(), keras_loss.numpy(), rtol=1e-5)
    keras_grads = tape.gradient(keras_loss, model.trainable_weights)
    fast_grads = tape.gradient(fast_loss, weights)
    for got, want in zip(fast_grads, keras_grads, strict=True):
        np.testing.assert_allclose(
            tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy(), atol=1e-5
        )
    # Something the comparison can see: the gradients are not zero.
    assert min(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) for g in fast_grads) > 1e-4
