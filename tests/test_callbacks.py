"""Each callback of the round loop (``fedlab.callbacks``) alone, and the loop that calls them
(``fedlab.core.loop.train``).

Everything is real and tiny: the fast engine on multinomial logistic regression (7,850 weights),
rounds of two or three random clients of a dozen examples, the real ``Evaluator`` on 60 random
test examples (checked against the same numbers computed in NumPy), a real ``RunConfig`` and
``ClientStateStore``. Only the tracker is a test's own: a ``Tracker`` that remembers what it was
given.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from fedlab import checkpoint
from fedlab.algorithms import Algorithm
from fedlab.callbacks import (
    Callback,
    CheckpointCallback,
    CommunicationCallback,
    EvaluationCallback,
    ProgressCallback,
    RoundRecord,
    TargetCallback,
    TimingCallback,
    TrackingCallback,
    TrainingContext,
)
from fedlab.callbacks.base import Progress
from fedlab.core.client_state import ClientStateStore
from fedlab.core.loop import train
from fedlab.core.types import ClientWork
from fedlab.errors import DivergedError
from fedlab.evaluation import Evaluator
from fedlab.optimizers import optimizer_config
from fedlab.tracking import Tracker
from fedlab.validation import typed
from tests.conftest import CONF
from tests.engines import make_fast, mnist_model

SGD = optimizer_config("sgd", lr=0.1)
MODEL_BYTES = (784 * 10 + 10) * 4  # logreg's kernel and bias, float32
TEST_EXAMPLES = 60
ROUND_CLIENTS = (0, 1)  # the clients of every round in these tests


def _clients(sizes, seed, nan=False) -> list[ClientWork]:
    """Random clients of the given sizes, one local epoch in batches of 5."""
    rng = np.random.default_rng(seed)
    made = []
    for i, n in enumerate(sizes):
        x = rng.random((n, 784), dtype=np.float32)
        if nan:
            x[:] = np.nan
        y = rng.integers(0, 10, n).astype(np.int32)
        made.append(ClientWork(x, y, rng.permutation(n)[None, :], 5, client_id=i))
    return made


def _expected_eval(weights, x, y) -> tuple[float, float]:
    """Test loss and accuracy of logreg ``weights``, in float64 NumPy."""
    kernel, bias = (np.asarray(w, np.float64) for w in weights)
    logits = x.astype(np.float64) @ kernel + bias
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    loss = -log_softmax[np.arange(len(y)), y].mean()
    return float(loss), float(np.mean(logits.argmax(axis=1) == y))


class RecordingTracker(Tracker):
    """Remembers every metric and artifact it is given."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path: Path) -> None:
        self.artifacts.append(Path(path))

    @property
    def run_id(self) -> str | None:
        return "run-under-test"

    @property
    def steps(self) -> list[int]:
        return [step for step, _ in self.metrics]


class TwoWay(Algorithm):
    """An algorithm that sends two model-sized arrays to each client (SCAFFOLD's shape)."""

    name = "two_way"
    broadcast_copies = 2


@dataclasses.dataclass(frozen=True)
class Setup:
    engine: object
    state0: object  # the server state before the round
    output: object  # the RoundOutput of one real round from state0
    x_test: np.ndarray
    y_test: np.ndarray
    evaluator: Evaluator
    run_cfg: object  # a real RunConfig


@pytest.fixture(scope="module")
def setup() -> Setup:
    rng = np.random.default_rng(0)
    engine = make_fast("logreg", SGD, SGD, parallel_clients=1)
    weights = [
        rng.normal(0.0, 0.05, (784, 10)).astype(np.float32),
        rng.normal(0.0, 0.05, 10).astype(np.float32),
    ]
    state0 = engine.initialize(weights)
    output = engine.next(state0, _clients((12, 9), seed=1))
    x_test = rng.random((TEST_EXAMPLES, 784), dtype=np.float32)
    y_test = rng.integers(0, 10, TEST_EXAMPLES).astype(np.int32)
    # Batches of 25: two full batches and a partial one.
    evaluator = Evaluator(mnist_model("logreg"), x_test, y_test, batch_size=25)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        composed = compose("config", overrides=["model=logreg", "target_accuracy=0.5"])
    return Setup(engine, state0, output, x_test, y_test, evaluator, typed(composed))


def _ctx(setup: Setup, progress: Progress | None = None, algorithm=None, tracker=None):
    return TrainingContext(
        cfg=setup.run_cfg,
        engine=setup.engine,
        state=setup.state0,
        progress=progress or Progress(),
        tracker=tracker or RecordingTracker(),
        algorithm=algorithm or setup.engine.algorithm,
        model_bytes=sum(w.nbytes for w in setup.engine.model_weights(setup.state0)),
    )


def _record(setup: Setup, ctx: TrainingContext, round_num: int, clients: int = 2) -> RoundRecord:
    """The record of round ``round_num`` as the loop builds it from ``ctx``."""
    return RoundRecord(
        round=round_num,
        output=setup.output,
        clients=clients,
        progress=dataclasses.replace(ctx.progress, round=round_num),
        metrics={"train/loss": setup.output.train_loss},
    )


def _commit(ctx: TrainingContext, record: RoundRecord) -> None:
    """What the loop does between ``measure`` and ``after_round``."""
    ctx.state, ctx.progress = record.output.state, record.progress


def test_model_bytes_are_logregs_float32_weights(setup) -> None:
    assert _ctx(setup).model_bytes == MODEL_BYTES


# -- communication ------------------------------------------------------------------------


def test_communication_counts_one_model_each_way_per_client_and_accumulates(setup) -> None:
    ctx, callback = _ctx(setup), CommunicationCallback()
    one_way = MODEL_BYTES * 2 / 1e6  # one copy to (and from) each of 2 clients
    for round_num in (1, 2, 3):
        record = _record(setup, ctx, round_num)
        callback.measure(ctx, record)
        assert record.metrics["comm/broadcast_mb"] == pytest.approx(one_way, rel=1e-12)
        assert record.metrics["comm/uploaded_mb"] == pytest.approx(one_way, rel=1e-12)
        assert record.metrics["comm/total_mb"] == pytest.approx(2 * one_way * round_num)
        assert record.progress.total_mb == record.metrics["comm/total_mb"]
        assert ctx.progress.total_mb == pytest.approx(2 * one_way * (round_num - 1))
        _commit(ctx, record)
    assert ctx.progress.total_mb == pytest.approx(6 * one_way)


def test_communication_scales_with_clients_and_the_algorithms_copies(setup) -> None:
    algorithm = TwoWay(None, None, num_clients=10)
    ctx = _ctx(setup, Progress(total_mb=1.5), algorithm=algorithm)
    record = _record(setup, ctx, 1, clients=3)
    CommunicationCallback().measure(ctx, record)
    per_copy = MODEL_BYTES * 3 / 1e6
    assert record.metrics["comm/broadcast_mb"] == pytest.approx(2 * per_copy, rel=1e-12)
    assert record.metrics["comm/uploaded_mb"] == pytest.approx(per_copy, rel=1e-12)
    assert record.progress.total_mb == pytest.approx(1.5 + 3 * per_copy, rel=1e-12)


# -- evaluation ---------------------------------------------------------------------------


def test_evaluator_matches_numpy(setup) -> None:
    weights = setup.engine.model_weights(setup.output.state)
    loss, accuracy = setup.evaluator(weights)
    want_loss, want_accuracy = _expected_eval(weights, setup.x_test, setup.y_test)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert accuracy == want_accuracy  # a count over 60: exact


def test_evaluation_at_round_0_is_logged_at_step_0(setup) -> None:
    ctx = _ctx(setup)
    EvaluationCallback(setup.evaluator, every=3, rounds=10).on_train_begin(ctx)
    loss, accuracy = _expected_eval(
        setup.engine.model_weights(setup.state0), setup.x_test, setup.y_test
    )
    assert ctx.progress.history == {0: accuracy}
    [(step, metrics)] = ctx.tracker.metrics
    assert step == 0
    assert metrics.keys() == {"eval/loss", "eval/accuracy", "eval/best_accuracy", "time/eval_s"}
    assert 0 < metrics["time/eval_s"] < 60  # the evaluation's own wall time
    assert metrics["eval/loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["eval/accuracy"] == metrics["eval/best_accuracy"] == accuracy


@pytest.mark.parametrize(
    "progress",
    [Progress(round=4, history={4: 0.2}), Progress(round=0, history={0: 0.25})],
    ids=["resumed-past-round-0", "round-0-already-evaluated"],
)
def test_evaluation_at_round_0_only_once(setup, progress) -> None:
    ctx = _ctx(setup, progress)
    EvaluationCallback(setup.evaluator, every=3, rounds=10).on_train_begin(ctx)
    assert ctx.progress == progress
    assert ctx.tracker.metrics == []


def test_evaluation_every_eval_every_rounds_and_at_the_last(setup) -> None:
    ctx = _ctx(setup, Progress(history={0: 0.0}))
    callback = EvaluationCallback(setup.evaluator, every=3, rounds=10)
    evaluated = []
    for round_num in range(1, 11):
        record = _record(setup, ctx, round_num)
        callback.measure(ctx, record)
        if "eval/accuracy" in record.metrics:
            evaluated.append(round_num)
        assert ("eval/loss" in record.metrics) == (round_num in record.progress.history)
        _commit(ctx, record)
    assert evaluated == [3, 6, 9, 10]
    assert sorted(ctx.progress.history) == [0, 3, 6, 9, 10]


def test_evaluation_measures_the_rounds_new_model(setup) -> None:
    old = _expected_eval(setup.engine.model_weights(setup.state0), setup.x_test, setup.y_test)
    new = _expected_eval(setup.engine.model_weights(setup.output.state), setup.x_test, setup.y_test)
    assert abs(new[0] - old[0]) > 1e-4  # the round moved the model enough to tell them apart
    ctx = _ctx(setup, Progress(history={0: 0.0}))
    record = _record(setup, ctx, 1)
    EvaluationCallback(setup.evaluator, every=1, rounds=10).measure(ctx, record)
    assert record.metrics["eval/loss"] == pytest.approx(new[0], rel=1e-5)
    assert record.metrics["eval/accuracy"] == new[1]
    assert record.progress.history == {0: 0.0, 1: new[1]}
    assert ctx.progress.history == {0: 0.0}  # the run's own progress waits for the commit


@pytest.mark.parametrize("earlier", [0.0, 1.0])
def test_evaluation_best_accuracy_is_over_the_history(setup, earlier) -> None:
    ctx = _ctx(setup, Progress(round=4, history={0: 0.0, 2: earlier}))
    record = _record(setup, ctx, 5)
    EvaluationCallback(setup.evaluator, every=5, rounds=10).measure(ctx, record)
    accuracy = record.metrics["eval/accuracy"]
    assert 0.0 < accuracy < 1.0
    assert record.metrics["eval/best_accuracy"] == max(earlier, accuracy)


# -- target and timing --------------------------------------------------------------------


def _measure_target(ctx, callback, round_num, accuracy):
    """Round ``round_num``, evaluated at ``accuracy`` (None: not evaluated), through the target
    callback and committed."""
    record = RoundRecord(
        round=round_num,
        output=None,
        clients=2,
        progress=dataclasses.replace(ctx.progress, round=round_num),
        metrics={},
    )
    if accuracy is not None:
        history = {**record.progress.history, round_num: accuracy}
        record.progress = dataclasses.replace(record.progress, history=history)
    callback.measure(ctx, record)
    ctx.progress = record.progress  # the commit (no engine output here)
    callback.after_round(ctx, record)
    return record


@pytest.mark.parametrize("stop_at_target", [False, True])
def test_rounds_to_target_is_the_first_evaluated_round_that_reaches_it(
    setup, stop_at_target
) -> None:
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback = TargetCallback(target=0.5, stop_at_target=stop_at_target)
    reached, stopped = [], []
    # Round 2 is above the target but not evaluated; round 3 reaches it exactly; 4 is higher.
    for round_num, accuracy in [(1, 0.49), (2, None), (3, 0.5), (4, 0.9), (5, 0.2)]:
        record = _measure_target(ctx, callback, round_num, accuracy)
        reached.append(ctx.progress.rounds_to_target)
        stopped.append(ctx.stop)
        if round_num == 3:
            assert record.metrics == {"rounds_to_target": 3}
        else:
            assert "rounds_to_target" not in record.metrics
    assert reached == [None, None, 3, 3, 3]
    assert stopped == [False, False, stop_at_target, stop_at_target, stop_at_target]


def test_target_reached_before_a_resume_is_kept(setup) -> None:
    ctx = _ctx(setup, Progress(round=7, history={0: 0.1, 7: 0.8}, rounds_to_target=6))
    record = _measure_target(ctx, TargetCallback(0.5, stop_at_target=False), 8, 0.9)
    assert record.progress.rounds_to_target == 6
    assert "rounds_to_target" not in record.metrics


@pytest.mark.parametrize("ago_s", [0.0, 5.0])
def test_round_time_is_measured_from_the_rounds_start(setup, ago_s) -> None:
    ctx = _ctx(setup)
    record = _record(setup, ctx, 1)
    record.started = time.monotonic() - ago_s
    TimingCallback().measure(ctx, record)
    assert ago_s <= record.metrics["time/round_s"] < ago_s + 2.0


# -- tracking -----------------------------------------------------------------------------


def test_tracking_logs_each_round_past_logged_up_to_once(setup, tmp_path) -> None:
    tracker = RecordingTracker()
    ctx = _ctx(setup, tracker=tracker)
    callback = TrackingCallback(tracker, 2, tmp_path, mnist_model, log_model=False)
    records = []
    for round_num in (1, 2, 3, 4):
        record = _record(setup, ctx, round_num)
        record.metrics["round"] = float(round_num)
        callback.measure(ctx, record)
        _commit(ctx, record)
        callback.after_round(ctx, record)
        records.append(record)
    assert tracker.metrics == [(3, records[2].metrics), (4, records[3].metrics)]


@pytest.mark.parametrize("log_model", [False, True])
def test_tracking_at_the_end_logs_the_figure_and_the_model_if_asked(
    setup, tmp_path, log_model
) -> None:
    import tensorflow as tf

    tracker = RecordingTracker()
    ctx = _ctx(setup, Progress(round=2, history={0: 0.1, 2: 0.3}), tracker=tracker)
    ctx.state = setup.output.state
    callback = TrackingCallback(
        tracker, -1, tmp_path, lambda: mnist_model("logreg"), log_model=log_model
    )
    callback.on_train_end(ctx)
    figure, model_file = tmp_path / "metrics.png", tmp_path / "model.keras"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tracker.artifacts == ([figure, model_file] if log_model else [figure])
    assert model_file.exists() == log_model
    if log_model:
        saved = tf.keras.models.load_model(model_file).get_weights()
        for got, want in zip(saved, setup.engine.model_weights(ctx.state), strict=True):
            np.testing.assert_array_equal(got, want)
    assert tracker.metrics == []


def test_a_run_with_tracking_none_draws_no_figure(tmp_path) -> None:
    """tracking=none prints the metrics only (conf/tracking/none.yaml): no metrics.png."""
    from fedlab.experiment import run
    from tests.conftest import checked

    cfg = checked(
        "model=logreg", "num_clients=10", "C=0.2", "rounds=1", "tracking=none",
        "checkpoint_every=0",
    )  # fmt: skip
    result = run(cfg, output_dir=tmp_path, progress=False)
    assert result.rounds == 1
    assert not (tmp_path / "metrics.png").exists()


def test_the_runs_figure_has_every_metric_against_rounds_and_mb() -> None:
    from fedlab.plots import run_figure

    history = {
        "train/loss": [(1, 1.2), (2, 0.8), (3, 0.6)],
        "eval/accuracy": [(0, 0.1), (1, 0.7), (3, 0.9)],
        "comm/total_mb": [(1, 4.0), (2, 8.0), (3, 12.0)],
        "time/round_s": [(1, 0.5), (2, 0.5), (3, 0.5)],  # not in the figure
    }

    def panels(fig) -> list[tuple[str, str]]:
        return [(ax.get_ylabel(), ax.get_xlabel()) for ax in fig.axes]

    fig = run_figure(history, 0.97)
    assert [y for y, _ in panels(fig)] == ["train loss"] * 2 + ["test accuracy"] * 2
    assert panels(fig)[-2:] == [
        ("test accuracy", "communication rounds"),
        ("test accuracy", "MB communicated (broadcast and uploads)"),
    ]
    mb_line = fig.axes[3].get_lines()[0]
    assert list(mb_line.get_xdata()) == [0.0, 4.0, 12.0]  # round 0 is 0 MB; evaluated rounds
    assert list(mb_line.get_ydata()) == [0.1, 0.7, 0.9]
    # Personalized accuracy and the privacy spent, where the run logged them.
    more = {**history, "eval/personalized_accuracy": [(1, 0.8)], "privacy/epsilon": [(1, 2.0)]}
    labels = [y for y, _ in panels(run_figure(more, 0.97))][::2]
    assert labels == ["train loss", "test accuracy", "personalized accuracy", "ε spent (privacy)"]
    # Without communication counted: against rounds only.
    alone = {k: v for k, v in history.items() if k != "comm/total_mb"}
    assert len(run_figure(alone, 0.97).axes) == 2


# -- checkpoint ---------------------------------------------------------------------------


def _checkpointer(setup, tmp_path, every, rounds):
    path = tmp_path / "run-key.npz"
    store = ClientStateStore(checkpoint.client_state_dir(path))
    return path, store, CheckpointCallback(path, "key", every, rounds, store)


def _saved_round(path: Path) -> int | None:
    saved = checkpoint.load(path, "key")
    return None if saved is None else saved.round


def _finish_round(setup, ctx, store, callback, round_num, accuracy, stop=False) -> None:
    """Round ``round_num`` as the loop commits it: client ``round_num % 2`` trained."""
    record = _record(setup, ctx, round_num)
    history = {**record.progress.history, round_num: accuracy}
    record.progress = dataclasses.replace(
        record.progress, history=history, total_mb=0.25 * round_num
    )
    _commit(ctx, record)
    store.update({round_num % 2: [np.full(3, round_num, np.float32)]}, round_num)
    ctx.stop = stop
    callback.after_round(ctx, record)


def test_checkpoint_every_n_rounds_and_at_the_last(setup, tmp_path) -> None:
    path, store, callback = _checkpointer(setup, tmp_path, every=2, rounds=5)
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback.on_train_begin(ctx)
    saved = []
    for round_num in range(1, 6):
        _finish_round(setup, ctx, store, callback, round_num, accuracy=0.1 * round_num)
        saved.append(_saved_round(path))
    assert saved == [None, 2, 2, 4, 5]


def test_checkpoint_when_a_callback_stops_the_run(setup, tmp_path) -> None:
    path, store, callback = _checkpointer(setup, tmp_path, every=10, rounds=20)
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback.on_train_begin(ctx)
    _finish_round(setup, ctx, store, callback, 1, accuracy=0.2)
    assert _saved_round(path) is None
    _finish_round(setup, ctx, store, callback, 2, accuracy=0.3, stop=True)
    assert _saved_round(path) == 2


def test_checkpoint_holds_the_runs_state(setup, tmp_path) -> None:
    path, store, callback = _checkpointer(setup, tmp_path, every=2, rounds=10)
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback.on_train_begin(ctx)
    for round_num in (1, 2, 3, 4):
        if round_num == 4:
            ctx.progress = dataclasses.replace(ctx.progress, rounds_to_target=2)
        _finish_round(setup, ctx, store, callback, round_num, accuracy=0.25 * round_num)
    saved = checkpoint.load(path, "key")
    assert saved.round == 4
    assert saved.history == {0: 0.1, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    assert (saved.rounds_to_target, saved.total_mb) == (2, 1.0)
    assert saved.run_id == "run-under-test" and saved.config_key == "key"
    assert saved.client_states == {0: 4, 1: 3}  # each trained every other round
    for got, want in zip(saved.state, setup.engine.state_arrays(setup.output.state), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # The files the round-2 checkpoint listed are superseded and pruned.
    names = sorted(p.name for p in checkpoint.client_state_dir(path).iterdir())
    assert names == ["client-000000.r000004.npz", "client-000001.r000003.npz"]
    reopened = ClientStateStore(checkpoint.client_state_dir(path), saved.client_states)
    np.testing.assert_array_equal(reopened.get(0)[0], np.full(3, 4, np.float32))
    np.testing.assert_array_equal(reopened.get(1)[0], np.full(3, 3, np.float32))


def test_checkpoint_on_interrupt_only_past_the_last_save(setup, tmp_path) -> None:
    path, store, callback = _checkpointer(setup, tmp_path, every=2, rounds=10)
    ctx = _ctx(setup, Progress(round=4, history={0: 0.1, 4: 0.4}))
    callback.on_train_begin(ctx)  # resumed at round 4: that checkpoint exists
    callback.on_interrupt(ctx)
    assert not path.exists()
    _finish_round(setup, ctx, store, callback, 5, accuracy=0.5)
    assert not path.exists()
    callback.on_interrupt(ctx)
    assert _saved_round(path) == 5
    _finish_round(setup, ctx, store, callback, 6, accuracy=0.6)
    path.unlink()
    callback.on_interrupt(ctx)  # round 6 is already saved
    assert not path.exists()


# -- progress -----------------------------------------------------------------------------


def test_progress_bar_counts_rounds_from_the_resumed_one(setup, capsys) -> None:
    ctx = _ctx(setup, Progress(round=2, history={0: 0.1, 2: 0.25}))
    callback = ProgressCallback("FedAvg iid", total=5, enabled=True)
    callback.on_train_begin(ctx)
    assert (callback.bar.n, callback.bar.total, callback.bar.disable) == (2, 5, False)
    for round_num in (3, 4):
        record = _record(setup, ctx, round_num)
        history = {**record.progress.history, round_num: 0.125 * round_num}
        record.progress = dataclasses.replace(record.progress, history=history)
        _commit(ctx, record)
        callback.after_round(ctx, record)
    assert callback.bar.n == 4
    assert callback.bar.postfix == f"loss={setup.output.train_loss:.4f}, test_acc=0.5000"
    callback.close()
    assert callback.bar.disable  # tqdm marks a closed bar so
    err = capsys.readouterr().err
    assert "FedAvg iid" in err and "4/5" in err


def test_progress_bar_disabled_writes_nothing(setup, capsys) -> None:
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback = ProgressCallback("FedAvg iid", total=5, enabled=False)
    callback.on_train_begin(ctx)
    record = _record(setup, ctx, 1)
    _commit(ctx, record)
    callback.after_round(ctx, record)
    callback.close()
    assert callback.bar.disable
    assert capsys.readouterr().err == ""


def _progress_lines(setup, caplog, rounds: int, **every) -> list[str]:
    """The lines a progress callback without a bar logs over ``rounds`` rounds."""
    ctx = _ctx(setup, Progress(history={0: 0.1}))
    callback = ProgressCallback("FedAvg iid", total=rounds, enabled=False, **every)
    with caplog.at_level("INFO", logger="fedlab.callbacks.progress"):
        callback.on_train_begin(ctx)
        for round_num in range(1, rounds + 1):
            record = _record(setup, ctx, round_num)
            history = {**record.progress.history, round_num: 0.5}
            record.progress = dataclasses.replace(record.progress, history=history)
            _commit(ctx, record)
            callback.after_round(ctx, record)
        callback.close()
    return [r.getMessage() for r in caplog.records if r.name == "fedlab.callbacks.progress"]


def test_progress_without_a_terminal_logs_the_first_every_nth_and_last_round(setup, caplog) -> None:
    lines = _progress_lines(setup, caplog, rounds=7, log_every_s=None, log_every_rounds=3)
    assert lines[0] == "training rounds 1 to 7 (10 clients a round) ..."
    rounds = [line.split(":")[0] for line in lines[1:]]
    assert rounds == ["round 1/7", "round 4/7", "round 7/7"]  # the first, every 3rd, the last
    loss = f"{setup.output.train_loss:.4f}"
    assert lines[1].startswith(f"round 1/7: train loss {loss}, test accuracy 0.5000 (round 1); ")
    assert "left" in lines[1] and "left" not in lines[-1]


def test_progress_without_a_terminal_logs_by_time(setup, caplog) -> None:
    every_round = _progress_lines(setup, caplog, rounds=3, log_every_s=0.0)
    assert [line.split(":")[0] for line in every_round[1:]] == [
        "round 1/3",
        "round 2/3",
        "round 3/3",
    ]
    caplog.clear()
    # An hour between lines: only the first round and the last.
    hourly = _progress_lines(setup, caplog, rounds=3, log_every_s=3600.0)
    assert [line.split(":")[0] for line in hourly[1:]] == ["round 1/3", "round 3/3"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.progress.log_every_s=-1", "callbacks.progress.log_every_s=-1.0 is invalid"),
        (
            "callbacks.progress.log_every_rounds=0",
            "callbacks.progress.log_every_rounds=0 is invalid",
        ),
    ],
)
def test_progress_intervals_are_checked(override: str, message: str) -> None:
    from fedlab.errors import ConfigError
    from tests.conftest import checked

    with pytest.raises(ConfigError, match=message):
        checked(override)


def test_progress_close_before_begin() -> None:
    ProgressCallback("x", total=1, enabled=True).close()  # nothing to close, no error


# -- the loop -----------------------------------------------------------------------------


class Recorder(Callback):
    """Records each hook it gets, with the round the run was at and whether ``ctx.state`` was
    the round's new state."""

    def __init__(self, name: str, events: list, stop_after=None, raise_in=None) -> None:
        self.name, self.events = name, events
        self.stop_after, self.raise_in = stop_after, raise_in  # raise_in: (hook, round, error)

    def _log(self, hook, ctx, record=None) -> None:
        new_state = record is not None and ctx.state is record.output.state
        self.events.append(
            (self.name, hook, record and record.round, ctx.progress.round, new_state)
        )
        if self.raise_in and self.raise_in[:2] == (hook, record and record.round):
            raise self.raise_in[2]

    def on_train_begin(self, ctx) -> None:
        self._log("begin", ctx)

    def measure(self, ctx, record) -> None:
        record.progress = dataclasses.replace(record.progress, history={record.round: 0.5})
        self._log("measure", ctx, record)

    def after_round(self, ctx, record) -> None:
        self._log("after", ctx, record)
        if record.round == self.stop_after:
            ctx.stop = True

    def on_interrupt(self, ctx) -> None:
        self._log("interrupt", ctx)

    def on_train_end(self, ctx) -> None:
        self._log("end", ctx)

    def close(self) -> None:
        self.events.append((self.name, "close"))


def _run_loop(setup, callbacks, rounds=3, progress=None, clients=None):
    """``train`` with the real engine from ``setup.state0``; returns (ctx, result, work asked)."""
    clients = clients or _clients((8, 6), seed=2)
    asked = []

    def client_work(client_id, round_num):
        asked.append((client_id, round_num))
        return clients[client_id]

    ctx = _ctx(setup, progress)
    sample = lambda round_num: np.array(ROUND_CLIENTS)  # noqa: E731
    result = train(ctx, callbacks, sample, client_work, rounds, ClientStateStore(None))
    return ctx, result, asked


def test_loop_calls_every_measure_then_every_after_round(setup) -> None:
    events = []
    callbacks = [CommunicationCallback(), Recorder("a", events), Recorder("b", events)]
    ctx, result, asked = _run_loop(setup, callbacks, rounds=2)
    assert events == [
        ("a", "begin", None, 0, False),
        ("b", "begin", None, 0, False),
        ("a", "measure", 1, 0, False),
        ("b", "measure", 1, 0, False),
        ("a", "after", 1, 1, True),
        ("b", "after", 1, 1, True),
        ("a", "measure", 2, 1, False),
        ("b", "measure", 2, 1, False),
        ("a", "after", 2, 2, True),
        ("b", "after", 2, 2, True),
        ("a", "end", None, 2, False),
        ("b", "end", None, 2, False),
        ("a", "close"),
        ("b", "close"),
    ]
    assert asked == [(0, 1), (1, 1), (0, 2), (1, 2)]
    # What the callbacks measured became the run's progress.
    assert result is ctx.progress
    assert result.round == 2 and result.history == {2: 0.5}
    assert result.total_mb == pytest.approx(2 * 2 * MODEL_BYTES * 2 / 1e6)


def test_loop_continues_from_the_resumed_round(setup) -> None:
    events = []
    ctx, result, asked = _run_loop(setup, [Recorder("a", events)], 5, Progress(round=3))
    assert [e[2] for e in events if e[1] == "after"] == [4, 5]
    assert asked == [(0, 4), (1, 4), (0, 5), (1, 5)]
    assert result.round == 5


def test_loop_stops_after_the_round_a_callback_stops_at(setup) -> None:
    events = []
    callbacks = [Recorder("a", events, stop_after=2), Recorder("b", events)]
    _, result, _ = _run_loop(setup, callbacks, rounds=5)
    assert [e[:3] for e in events[-6:]] == [
        ("a", "after", 2),
        ("b", "after", 2),  # the round is finished by every callback
        ("a", "end", None),
        ("b", "end", None),
        ("a", "close"),
        ("b", "close"),
    ]
    assert result.round == 2


def test_loop_on_ctrl_c_interrupts_every_callback_and_reraises(setup) -> None:
    events = []
    callbacks = [
        Recorder("a", events),
        Recorder("b", events, raise_in=("measure", 2, KeyboardInterrupt())),
    ]
    with pytest.raises(KeyboardInterrupt):
        _run_loop(setup, callbacks, rounds=5)
    assert events[-6:] == [
        ("a", "measure", 2, 1, False),
        ("b", "measure", 2, 1, False),
        ("a", "interrupt", None, 1, False),  # round 2 is abandoned: the run stands at 1
        ("b", "interrupt", None, 1, False),
        ("a", "close"),
        ("b", "close"),
    ]


def test_loop_closes_callbacks_on_an_error(setup) -> None:
    events = []
    callbacks = [
        Recorder("a", events, raise_in=("after", 1, RuntimeError("boom"))),
        Recorder("b", events),
    ]
    with pytest.raises(RuntimeError, match="boom"):
        _run_loop(setup, callbacks, rounds=5)
    assert [e[:2] for e in events[-3:]] == [("a", "after"), ("a", "close"), ("b", "close")]


def test_loop_stops_on_divergence_before_the_callbacks_measure(setup) -> None:
    events = []
    with pytest.raises(DivergedError, match="round 1"):
        _run_loop(setup, [Recorder("a", events)], clients=_clients((4, 4), 3, nan=True))
    assert events == [("a", "begin", None, 0, False), ("a", "close")]


# -- interplay ----------------------------------------------------------------------------


class InterruptedTracker(RecordingTracker):
    """Ctrl-C arrives while it records round ``at``'s metrics (MLflow is slow to log)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def log_metrics(self, metrics, step) -> None:
        if step == self.at:
            raise KeyboardInterrupt
        super().log_metrics(metrics, step)


def test_an_interrupt_while_logging_a_round_leaves_no_hole_in_the_metrics(setup, tmp_path) -> None:
    tracker = InterruptedTracker(at=2)
    path = tmp_path / "run-key.npz"
    store = ClientStateStore(checkpoint.client_state_dir(path))
    callbacks = [
        TrackingCallback(tracker, -1, tmp_path, mnist_model, log_model=False),
        CheckpointCallback(path, "key", 10, 5, store),
    ]
    ctx = _ctx(setup, tracker=tracker)
    sample = lambda round_num: np.array(ROUND_CLIENTS)  # noqa: E731
    clients = _clients((8, 6), seed=2)
    with pytest.raises(KeyboardInterrupt):
        train(ctx, callbacks, sample, lambda c, r: clients[c], 5, store)
    assert tracker.steps == [1]
    # A re-run resumes from the checkpoint and logs the rounds after it: every round up to the
    # checkpoint's must already be in the tracker.
    assert _saved_round(path) <= max(tracker.steps)
