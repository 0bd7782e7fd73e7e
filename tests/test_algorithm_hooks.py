"""The algorithm hooks that own both ends of a round (``fedlab.algorithms.base``): where each one
acts in engine=fast's round, checked with small variants of FedAvg whose effect is known exactly,
on real clients of unequal sizes (logistic regression, client and server SGD)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.algorithms import Algorithm
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import checked
from tests.engines import make_fast
from tests.test_fast import _clients, opt

SIZES = (7, 13, 20)


def _round(algorithm_class: type | None = None, clients=None, state=None, server_lr=1.0):
    engine = make_fast(
        "logreg",
        opt("sgd", 0.1),
        opt("sgd", server_lr),
        parallel_clients=1,
        algorithm_class=algorithm_class,
    )
    rng = np.random.default_rng(7)
    weights = [rng.normal(0, 0.1, s).astype(np.float32) for s in engine.model.shapes]
    state = state or engine.initialize(weights)
    clients = clients or _clients(SIZES, 1, 5, seed=3)
    return engine, state, engine.next(state, clients)


def _weights(engine, out) -> list[np.ndarray]:
    return engine.model_weights(out.state)


def test_the_default_hooks_leave_fedavg_as_it_was() -> None:
    engine, _, plain = _round()
    _, _, same = _round(type("Same", (Algorithm,), {}))
    for a, b in zip(_weights(engine, plain), _weights(engine, same), strict=True):
        np.testing.assert_array_equal(a, b)


class _Doubled(Algorithm):
    """Uploads twice the update and halves the aggregate: FedAvg again, bit for bit, if and
    only if both hooks act (a power of two scales float32 exactly)."""

    def client_upload(self, update, weight, steps, client_state):
        return [u * np.float32(2) for u in update], weight

    def server_aggregate(self, state, aggregate, uploads, weights):
        return [a / np.float32(2) for a in aggregate]


class _OnlyDoubled(_Doubled):
    def server_aggregate(self, state, aggregate, uploads, weights):
        return aggregate


def test_client_upload_and_server_aggregate_act_where_they_say() -> None:
    engine, state, plain = _round()
    _, _, doubled = _round(_Doubled)
    _, _, only_upload = _round(_OnlyDoubled)
    start = engine.model_weights(state)
    for w0, a, b, c in zip(
        start, _weights(engine, plain), _weights(engine, doubled), _weights(engine, only_upload),
        strict=True,
    ):  # fmt: skip
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(w0 - c, 2 * (w0 - a), rtol=1e-5, atol=1e-7)


class _Weighted(Algorithm):
    """Every client's weight 1: the aggregate is the plain mean of the updates."""

    def client_upload(self, update, weight, steps, client_state):
        return update, 1.0

    def client_result(self, update, steps, inputs, client_state, state):
        return {"update": update}, None


def test_client_upload_sets_the_weight_the_aggregator_sees() -> None:
    engine, state, out = _round(_Weighted)
    uploads = [u["update"] for u in _uploads(_Weighted)]
    mean = [np.mean([u[i] for u in uploads], axis=0) for i in range(len(uploads[0]))]
    start = engine.model_weights(state)
    for w0, w, m in zip(start, _weights(engine, out), mean, strict=True):
        np.testing.assert_allclose(w0 - w, m, rtol=1e-5, atol=1e-7)


def _uploads(algorithm_class) -> list[dict]:
    seen = []

    class Recording(algorithm_class):
        def server_update(self, state, uploads):
            seen.extend(uploads)
            return state, {}

    _round(Recording)
    return seen


class _Counted(Algorithm):
    """Uploads its local steps, and records what server_aggregate is given."""

    seen: list = []

    def client_result(self, update, steps, inputs, client_state, state):
        return {"steps": [np.array(steps)]}, None

    def client_upload(self, update, weight, steps, client_state):
        return update, weight + 0.5  # not the examples: the weight the aggregator is given

    def server_aggregate(self, state, aggregate, uploads, weights):
        _Counted.seen.append(([int(u["steps"][0]) for u in uploads], list(weights)))
        return aggregate


def test_server_aggregate_gets_each_finite_clients_upload_and_weight_in_order() -> None:
    # Sizes 7, 13, 20 and 9 in batches of 5: 2, 3, 4 and 2 steps; the second client diverges
    # (NaN features), so it uploads nothing and its weight is not among those given.
    _Counted.seen.clear()
    clients = _clients((7, 13, 20, 9), 1, 5, seed=3, nan_clients=(1,))
    _, _, out = _round(_Counted, clients=clients)
    assert out.examples_trained == 7 + 20 + 9
    assert _Counted.seen == [([2, 4, 2], [7.5, 20.5, 9.5])]


def test_the_weights_travel_with_a_slices_partial_sum() -> None:
    """placement=ray folds each slice into a partial sum where the clients train; the weights
    server_aggregate is given come back with it, one per finite client."""
    from fedlab.aggregators import AGGREGATORS
    from fedlab.backends.fast.engine import ClientResult, fold_slice

    mean = AGGREGATORS.get("mean")(AGGREGATORS.get("mean").Config(name="mean"))
    metrics = np.zeros(4, np.float32)
    results = [
        ClientResult([np.ones(2, np.float32)], 3.0, metrics, 3, {"i": [np.zeros(1)]}, None, 8),
        ClientResult(None, 0.0, metrics, 0, {}, None, 8),  # not finite
        ClientResult([np.ones(2, np.float32)], 5.0, metrics, 5, {"i": [np.ones(1)]}, None, 8),
    ]
    work = _clients((3, 4, 5), 1, 5, seed=1)
    folded = fold_slice(work, results, mean, {})
    assert folded.updates is None and folded.partial is not None
    assert folded.weights == [3.0, 5.0] and len(folded.uploads) == 2


class _Shifted(Algorithm):
    """server_model acts on the new global model, after the optimizer, with the new state."""

    def initial_state(self, shapes):
        return {"shift": [np.zeros(s, np.float32) for s in shapes]}

    def server_update(self, state, uploads):
        return {"shift": [a + np.float32(0.5) for a in state["shift"]]}, {"shifted": 1.0}

    def server_model(self, state, weights):
        return [w + s for w, s in zip(weights, state["shift"], strict=True)]


def test_server_model_acts_after_the_server_step_with_the_new_state() -> None:
    engine, _, plain = _round()
    _, _, shifted = _round(_Shifted)
    for a, b in zip(_weights(engine, plain), _weights(engine, shifted), strict=True):
        np.testing.assert_allclose(b - a, 0.5, atol=1e-6)
    assert shifted.algorithm_metrics == {"shifted": 1.0}


class _OwnBias(Algorithm):
    """Each client starts from the global kernel and a bias of its own (kept from its last
    round, zeros the first time): client_start, and the layers a client keeps."""

    def client_start(self, weights, client_state):
        bias = client_state[0] if client_state is not None else np.zeros_like(weights[1])
        return [weights[0], bias]

    def client_result(self, update, steps, inputs, client_state, state):
        start = client_state[0] if client_state is not None else np.zeros_like(update[1])
        return {}, [start - update[1]]


def test_client_start_trains_a_client_from_its_own_weights() -> None:
    engine, state, first = _round(_OwnBias)
    assert engine.algorithm.layer_of == (0, 0)
    kept = first.client_states
    assert sorted(kept) == [-1]  # _clients leaves every client id -1: one state, the last one's
    # The same round from global weights whose bias is zero is FedAvg's round on those weights.
    weights = engine.model_weights(state)
    zero_bias = engine.initialize([weights[0], np.zeros_like(weights[1])])
    _, _, reference = _round(state=zero_bias)
    np.testing.assert_array_equal(_weights(engine, first)[0], _weights(engine, reference)[0])


class _Personal(Algorithm):
    """A personal model trained on the plain local objective from the global weights, kept as
    the client's state: with one client and server SGD at lr 1, it is the new global model."""

    personal = True

    def personal_state(self, personal, client_state):
        return personal

    def personal_model(self, weights, client_state):
        return client_state


def test_a_personal_model_is_trained_and_kept() -> None:
    one = [ClientWork(w.x, w.y, w.order, w.batch_size, 5) for w in _clients((20,), 1, 5, 4)]
    engine, _, out = _round(_Personal, clients=one)
    (kept,) = out.client_states.values()
    for personal, new_global in zip(kept, _weights(engine, out), strict=True):
        np.testing.assert_allclose(personal, new_global, rtol=1e-6, atol=1e-7)
    assert engine.algorithm.personal_model(None, kept) is kept


class _OwnHead(Algorithm):
    """Each client trains the global kernel with a bias of its own: the global bias the first
    time, then the one it trained last (client_keep: the trained weights are start - update)."""

    def client_start(self, weights, client_state):
        return [weights[0], client_state[0] if client_state is not None else weights[1]]

    def client_keep(self, start, update, client_state):
        return [start[1] - update[1]]


def test_client_keep_keeps_part_of_the_trained_weights() -> None:
    one = [ClientWork(w.x, w.y, w.order, w.batch_size, 5) for w in _clients((20,), 1, 5, 4)]
    engine, state, first = _round(_OwnHead, clients=one)
    plain_engine, _, plain = _round(clients=one)
    # The first time it starts from the global weights: FedAvg's round; with one client and
    # server SGD at lr 1 the trained bias is the new global bias.
    (kept,) = first.client_states.values()
    np.testing.assert_allclose(kept[0], _weights(plain_engine, plain)[1], rtol=1e-6, atol=1e-7)
    # The second time it starts from its own bias, not the global one (here: zeros).
    weights = _weights(engine, first)
    zero_bias = engine.initialize([weights[0], np.zeros_like(weights[1])])
    again = [ClientWork(w.x, w.y, w.order, w.batch_size, 5, kept) for w in one]
    _, _, second = _round(_OwnHead, clients=again, state=zero_bias)
    own = engine.initialize([weights[0], kept[0]])
    _, _, reference = _round(clients=one, state=own)
    np.testing.assert_array_equal(_weights(engine, second)[0], _weights(engine, reference)[0])
    (kept_again,) = second.client_states.values()
    np.testing.assert_allclose(kept_again[0], _weights(engine, reference)[1], rtol=1e-6, atol=1e-7)


class _OnTheMean(Algorithm):
    needs_mean = True


def test_needs_mean_refuses_a_robust_aggregator_in_one_line() -> None:
    summed = checked("aggregator=mean")
    _OnTheMean.check(summed.algorithm, summed)  # a sum: allowed
    for robust in ("median", "trimmed_mean"):
        run = checked(f"aggregator={robust}")
        with pytest.raises(ConfigError) as info:
            _OnTheMean.check(run.algorithm, run)
        message = str(info.value)
        assert "\n" not in message
        assert f"aggregator={robust}" in message and "allowed: aggregator=mean" in message
