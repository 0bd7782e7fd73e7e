"""Compression of the uploads (``fedlab/compression/``): stochastic quantization is unbiased (a
statistical test) and sits on its grid, 32 bits is no compression bit for bit, top-k keeps exactly
the k largest entries, error feedback loses nothing, ``comm/uploaded_mb`` counts the encoded
bytes, and the one-line refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlab.compression import COMPRESSION, build_compressor
from fedlab.compression.quantize import quantize
from fedlab.compression.topk import top_k
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import checked
from tests.engines import make_fast, mnist_model
from tests.test_fast import O, opt


def _compressor(name: str, **keys):
    return build_compressor(COMPRESSION.get(name).Config(name=name, **keys), seed=0)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_stochastic_quantization_is_unbiased(bits: int) -> None:
    """R = 4,000 quantizations of one vector of n = 300 values.

    Each value x, at fraction p of its way between two of the grid's levels Δ apart, is rounded
    up with probability p: the decoded value has mean x and variance Δ² p (1 - p). Tests: the
    mean error of each coordinate over the R draws, divided by its standard error
    Δ sqrt(p (1 - p) / R), is N(0, 1) when unbiased; reject if any |z| > 5 (false alarm
    <= n * 5.7e-7 = 1.7e-4, Bonferroni), or if the overall z (all coordinates summed) exceeds 4
    (6.3e-5). Power: round-to-nearest (biased by up to Δ/2) gives |z| = sqrt(R) |bias/Δ| /
    sqrt(p(1-p)) ≈ 60 · 0.3/0.46 ≈ 40 at a coordinate with p = 0.3: detected with certainty;
    so is any bias of 0.1 Δ at one coordinate with p(1-p) >= 0.09 (z ≈ 21).
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    delta = (hi - lo) / (2**bits - 1)
    t = (x.astype(np.float64) - lo) / delta
    p = t - np.floor(t)
    draws = np.stack([quantize(x, bits, rng) for _ in range(4000)]).astype(np.float64)
    interior = (p > 1e-3) & (p < 1 - 1e-3)  # values on a level are exact, variance 0
    se = delta * np.sqrt(p * (1 - p) / len(draws))
    z = (draws.mean(axis=0) - x)[interior] / se[interior]
    assert np.abs(z).max() < 5, np.abs(z).max()
    total = (draws - x).sum(axis=1).mean() / math.sqrt((delta**2 * p * (1 - p)).sum() / len(draws))
    assert abs(total) < 4, total
    # Every decoded value is on the grid lo + q Δ, q in 0..2^bits - 1, and keeps the range.
    q = (draws - lo) / delta
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert len(np.unique(np.round(q))) <= 2**bits
    assert draws.min() >= lo - 1e-6 and draws.max() <= hi + 1e-6
    # Round-to-nearest, the biased alternative, fails the same per-coordinate test.
    nearest = (lo + np.round(t) * delta)[interior]
    assert np.abs((nearest - x[interior]) / se[interior]).max() > 5


def test_quantized_bytes_are_bits_per_value_plus_the_range_per_tensor() -> None:
    update = [np.ones((784, 10), np.float32), np.arange(10, dtype=np.float32)]
    _, nbytes, _ = _compressor("quantize", bits=4).encode(update, None, 1, 0)
    assert nbytes == (7840 * 4 // 8 + 8) + (math.ceil(10 * 4 / 8) + 8)
    decoded, nbytes, _ = _compressor("quantize", bits=32).encode(update, None, 1, 0)
    assert nbytes == 7850 * 4 and decoded is update


def _clients(seed: int) -> list[ClientWork]:
    rng = np.random.default_rng(seed)
    made = []
    for i, n in enumerate((7, 13, 20)):
        x = rng.random((n, 784), dtype=np.float32)
        y = rng.integers(0, 10, n).astype(np.int32)
        made.append(ClientWork(x, y, rng.permutation(n)[None], 5, i, None, seed))
    return made


def _initial() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [
        (rng.standard_normal(w.shape) * 0.05).astype(np.float32)
        for w in mnist_model("logreg").get_weights()
    ]


def _rounds(engine, rounds=2):
    state = engine.initialize(_initial())
    outs = []
    for r in range(1, rounds + 1):
        out = engine.next(state, _clients(r))
        outs.append(out)
        state = out.state
    return engine.state_arrays(state), outs


def test_32_bits_is_no_compression_bit_for_bit() -> None:
    sgd = opt(O.sgd, 0.1)
    plain, _ = _rounds(make_fast("logreg", sgd, sgd, parallel_clients=1))
    same, outs = _rounds(
        make_fast(
            "logreg", sgd, sgd, parallel_clients=1, compressor=_compressor("quantize", bits=32)
        )
    )
    for a, b in zip(plain, same, strict=True):
        np.testing.assert_array_equal(a, b)
    assert outs[0].update_bytes == 3 * 7850 * 4  # three clients, float32 each
    coarse, _ = _rounds(
        make_fast(
            "logreg", sgd, sgd, parallel_clients=1, compressor=_compressor("quantize", bits=2)
        )
    )
    assert max(np.abs(a - b).max() for a, b in zip(plain, coarse, strict=True)) > 1e-4


def test_top_k_keeps_exactly_the_k_largest_entries() -> None:
    rng = np.random.default_rng(1)
    update = [rng.standard_normal((30, 10)).astype(np.float32), rng.standard_normal(7)]
    update[1] = update[1].astype(np.float32)
    update[0][3, 4] = update[0][5, 6] = 9.0  # a tie among the largest
    sparse, kept = top_k(update, 25)
    flat = np.concatenate([a.ravel() for a in update])
    out = np.concatenate([a.ravel() for a in sparse])
    assert np.count_nonzero(out) == 25 and len(set(kept.tolist())) == 25
    np.testing.assert_array_equal(out[kept], flat[kept])  # kept entries unchanged
    smallest_kept = np.abs(flat[kept]).min()
    dropped = np.setdiff1d(np.arange(flat.size), kept)
    assert np.abs(flat[dropped]).max() <= smallest_kept
    assert [a.shape for a in sparse] == [a.shape for a in update]


def test_top_k_through_the_engine_uploads_k_entries_per_client() -> None:
    sgd = opt(O.sgd, 0.1)
    engine = make_fast(
        "logreg", sgd, sgd, parallel_clients=1, compressor=_compressor("topk", k=100)
    )
    initial = mnist_model("logreg").get_weights()
    out = engine.next(engine.initialize(initial), _clients(1))
    assert out.update_bytes == 3 * 100 * 8  # (int32 index, float32 value) each
    moved = np.concatenate(
        [(a - b).ravel() for a, b in zip(engine.model_weights(out.state), initial, strict=True)]
    )
    assert 0 < np.count_nonzero(moved) <= 300  # at most the union of the clients' k entries
    assert out.client_states == {}  # no error feedback: nothing kept per client


def test_error_feedback_delays_what_top_k_leaves_out_and_loses_nothing() -> None:
    rng = np.random.default_rng(2)
    topk = _compressor("topk", k=5, error_feedback=True)
    u1 = [rng.standard_normal(20).astype(np.float32)]
    u2 = [rng.standard_normal(20).astype(np.float32)]
    s1, _, r1 = topk.encode(u1, None, 1, 0)
    s2, _, r2 = topk.encode(u2, r1, 2, 0)
    np.testing.assert_allclose(s1[0] + s2[0] + r2[0], u1[0] + u2[0], atol=1e-6)
    assert np.count_nonzero(s2[0]) == 5
    np.testing.assert_array_equal(s1[0] + r1[0], u1[0])


def test_error_feedback_keeps_each_clients_residual_through_the_engine() -> None:
    sgd = opt(O.sgd, 0.1)
    engine = make_fast(
        "logreg", sgd, sgd, parallel_clients=1,
        compressor=_compressor("topk", k=50, error_feedback=True),
    )  # fmt: skip
    state = engine.initialize(mnist_model("logreg").get_weights())
    out = engine.next(state, _clients(1))
    assert sorted(out.client_states) == [0, 1, 2]
    residual = out.client_states[0]
    assert [a.shape for a in residual] == [(784, 10), (10,)]
    assert sum(np.count_nonzero(a) for a in residual) == 7850 - 50  # what was left out
    # The next round starts from it: a client with its residual uploads something else.
    work = _clients(2)
    with_state = [ClientWork(w.x, w.y, w.order, w.batch_size, w.client_id,
                             out.client_states[w.client_id], 2) for w in work]  # fmt: skip
    a = engine.model_weights(engine.next(out.state, work).state)
    b = engine.model_weights(engine.next(out.state, with_state).state)
    assert max(np.abs(x - y).max() for x, y in zip(a, b, strict=True)) > 1e-6


QUICK_RUN = [
    "model=logreg", "client_optimizer=sgd", "client_optimizer.lr=0.1", "server_optimizer=sgd",
    "num_clients=20", "C=0.25", "B=50", "rounds=2", "tracking=none", "checkpoint_every=0",
]  # fmt: skip


def test_uploaded_mb_counts_the_encoded_size(tmp_path, compose_cfg) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    logged = {}
    for name, extra in (("none", []), ("q32", ["compression=quantize", "compression.bits=32"]),
                        ("q4", ["compression=quantize", "compression.bits=4"]),
                        ("topk", ["compression=topk", "compression.k=785"])):  # fmt: skip
        cfg = checked(*QUICK_RUN, *extra)
        tracker = RecordingTracker()
        run(cfg, output_dir=tmp_path / name, tracker=tracker, progress=False)
        logged[name] = {k: v for k, v in tracker.metrics.items() if not k[0].startswith("time/")}
    assert logged["q32"] == logged["none"]  # 32 bits: the same run, bit for bit, same MB
    clients, values = 5, 7850
    q4 = clients * ((7840 * 4 // 8 + 8) + (10 * 4 // 8 + 8)) / 1e6
    assert logged["q4"][("comm/uploaded_mb", 1)] == pytest.approx(q4, rel=1e-12)
    assert logged["topk"][("comm/uploaded_mb", 1)] == pytest.approx(clients * 785 * 8 / 1e6)
    full = clients * values * 4 / 1e6
    assert logged["none"][("comm/uploaded_mb", 1)] == pytest.approx(full)
    for name in ("q4", "topk"):  # the broadcast is not compressed
        assert logged[name][("comm/broadcast_mb", 1)] == logged["none"][("comm/broadcast_mb", 1)]


BAD = [
    (["compression=quantize", "compression.bits=0"], ["compression.bits=0", "1 <= bits <= 32"]),
    (["compression=quantize", "compression.bits=33"], ["compression.bits=33", "1 <= bits <= 32"]),
    (["compression=topk", "compression.k=0"], ["compression.k=0", ">= 1"]),
    (
        ["compression=topk", "compression.k=7851", "model=logreg"],
        ["compression.k=7851", "model=logreg", "7850 parameters", "k <= 7850"],
    ),
    (["compression=topk", "engine=tff"], ["compression=topk", "engine=tff", "engine=fast"]),
    (["compression=quantize", "engine=tff"], ["compression=quantize", "engine=fast"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_compression_input_is_one_line(compose_cfg, overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked(*overrides)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
