"""Malicious clients (``fedlab/attacks/``): the attack kind and where an attack acts in a round.

The seams are checked with small attacks made here, on real clients of engine=fast (logistic
regression, client and server SGD): a malicious client's upload is replaced after its local
training and only for the malicious clients; an omniscient attack sees the round's honestly
trained updates and replaces the malicious ones before the aggregator, which is told which
they are; a data attack reaches the malicious clients' examples only, through the one function
every process that trains clients gets its data from; and a run under attack whose model
diverges ends as a result, tagged, not as an error. Each registered attack is checked against
its formula in ``tests/test_attack_options.py``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedlab import streams
from fedlab.aggregators import AGGREGATORS
from fedlab.aggregators.mean import Mean
from fedlab.attacks import ATTACKS, Attack, MaliciousConfig, malicious_clients, poisoned
from fedlab.checkpoint import config_key
from fedlab.errors import ConfigError
from tests.conftest import checked
from tests.test_fast import _clients, opt

RUN = checked("model=logreg", "num_clients=20", "C=0.5")


def _attack(cls: type[Attack], malicious: set[int], **keys) -> Attack:
    attack = cls(MaliciousConfig(name="test", fraction=0.5, **keys), RUN)
    attack.malicious = frozenset(malicious)  # the clients under test, whatever the seed drew
    return attack


# -- the kind ----------------------------------------------------------------------------------


def test_no_attack_is_the_default_and_leaves_the_checkpoint_key_as_it_was() -> None:
    cfg = checked()
    assert cfg.attack.name == "none" and "none" in ATTACKS
    # The key of a run without an attack is the key it had before attacks existed: the same
    # JSON of params, without any attack.* key (recomputed here as fedlab did then).
    import hashlib
    import json

    from fedlab.checkpoint import ADDED_LATER, affects_numbers
    from fedlab.config import run_params

    # Keys added since (ADDED_LATER) were not there either.
    params = {
        k: v
        for k, v in run_params(cfg).items()
        if affects_numbers(k, exact=True)
        and not k.startswith(("placement.", "attack."))
        and k not in ADDED_LATER
    }
    before = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    assert config_key(cfg) == before


def test_the_malicious_clients_are_a_seeded_fixed_share_of_k() -> None:
    chosen = malicious_clients(seed=3, num_clients=100, fraction=0.3)
    assert len(chosen) == 30 and all(0 <= c < 100 for c in chosen)
    assert chosen == malicious_clients(seed=3, num_clients=100, fraction=0.3)
    assert chosen != malicious_clients(seed=4, num_clients=100, fraction=0.3)
    want = streams.malicious(3).choice(100, 30, replace=False)
    assert chosen == frozenset(int(c) for c in want)
    assert malicious_clients(seed=3, num_clients=100, fraction=0.0) == frozenset()


def _check(cls: type[Attack], fraction: float, *overrides: str) -> None:
    cls.check(MaliciousConfig(name="test", fraction=fraction), checked(*overrides))


class _Omniscient(Attack):
    Config = MaliciousConfig
    omniscient = True


class _DataAttack(Attack):
    Config = MaliciousConfig
    poisons_data = True


BAD = [
    (Attack, -0.1, [], ["attack.fraction=-0.1", "0 <= fraction < 1"]),
    (Attack, 1.0, [], ["attack.fraction=1.0", "0 <= fraction < 1"]),
    (Attack, 0.001, [], ["makes no client malicious", "1/100"]),
    (Attack, 0.5, ["aggregator=median"], ["aggregator=median", "honest majority", "< 0.5"]),
    (_Omniscient, 0.2, ["C=0.0"], ["attack=test", "round's honest ones", ">= 2"]),
    (_Omniscient, 0.2, ["compression=topk"], ["compression=topk", "wire format"]),
    (
        _DataAttack,
        0.2,
        ["dataset=shakespeare", "model=char_lstm", "partition=natural", "num_clients=10"],
        ["attack=test", "dataset=shakespeare", "a class at every position", "allowed there"],
    ),
]


@pytest.mark.parametrize(
    ("cls", "fraction", "overrides", "words"), BAD, ids=[str(i) for i in range(len(BAD))]
)
def test_bad_attack_input_is_one_line(cls, fraction, overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        _check(cls, fraction, *overrides)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_what_the_checks_allow() -> None:
    assert not AGGREGATORS.get("mean").honest_majority
    assert AGGREGATORS.get("median").honest_majority
    _check(Attack, 0.6)  # the mean assumes nothing: a malicious majority is an experiment
    _check(_Omniscient, 0.2, "C=0.02")  # two clients a round
    _check(_DataAttack, 0.0, "dataset=shakespeare", "model=char_lstm", "partition=natural",
           "num_clients=10")  # fmt: skip  # no malicious client: nothing to refuse


# -- where an attack acts in a round ----------------------------------------------------------


class _Flip(Attack):
    """A malicious client uploads its update negated, weight unchanged."""

    Config = MaliciousConfig
    poisons_updates = True

    def poison_update(self, update, weight, round_num, client_id):
        return [-u for u in update], weight


class _Replace(Attack):
    """The malicious clients upload the mean of every honestly trained update, times 3."""

    Config = MaliciousConfig
    omniscient = True

    def collude(self, updates, malicious, round_num):
        mean = [np.mean([u[i] for u in updates], axis=0) for i in range(len(updates[0]))]
        crafted = [np.float32(3) * m for m in mean]
        return [crafted if bad else u for u, bad in zip(updates, malicious, strict=True)], {
            "crafted": float(sum(malicious))
        }


class _Recording(Mean):
    """The mean, recording what the engine hands it."""

    def next_marked(self, state, updates, weights, malicious):
        self.seen = ([[a.copy() for a in u] for u in updates], list(weights), malicious)
        return super().next_marked(state, updates, weights, malicious)


def _round(attack: Attack | None, nan_clients=()):
    from fedlab.backends.fast import FastEngine
    from tests.engines import parts

    p = parts("logreg", opt("sgd", 0.1), opt("sgd", 1.0))
    aggregator = _Recording(p.aggregator.cfg)
    engine = FastEngine(
        p.make_model(), p.client_optimizer, p.server_optimizer, p.algorithm, aggregator,
        parallel_clients=1, attack=attack,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    initial = [rng.normal(0, 0.1, s).astype(np.float32) for s in engine.model.shapes]
    state = engine.initialize(initial)
    clients = [
        dataclasses.replace(work, client_id=i, round_num=1)
        for i, work in enumerate(_clients((7, 13, 20, 9), 1, 5, seed=3, nan_clients=nan_clients))
    ]
    out = engine.next(state, clients)
    return aggregator.seen, out


def test_a_malicious_client_replaces_its_upload_after_training_and_only_it() -> None:
    (honest, weights, flags), plain = _round(None)
    (seen, seen_weights, marked), out = _round(_attack(_Flip, {1, 3}))
    assert flags is None and marked == [False, True, False, True]
    assert seen_weights == weights
    for i, (h, s) in enumerate(zip(honest, seen, strict=True)):
        for a, b in zip(h, s, strict=True):
            np.testing.assert_array_equal(b, -a if i in (1, 3) else a)
    assert out.attack_metrics == {"malicious_clients": 2.0} and plain.attack_metrics == {}


def test_an_omniscient_attack_sees_the_honest_updates_and_replaces_the_malicious_ones() -> None:
    (honest, _, _), _ = _round(None)
    (seen, _, marked), out = _round(_attack(_Replace, {0, 2}))
    mean = [np.mean([u[i] for u in honest], axis=0) for i in range(len(honest[0]))]
    for i, update in enumerate(seen):
        want = [np.float32(3) * m for m in mean] if i in (0, 2) else honest[i]
        for a, b in zip(update, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert marked == [True, False, True, False]
    assert out.attack_metrics == {"malicious_clients": 2.0, "crafted": 2.0}


def test_the_marks_follow_the_finite_updates_only() -> None:
    # Client 1 diverges (NaN features): it drops out, and so does its mark.
    (seen, _, marked), _ = _round(_attack(_Flip, {1, 2}), nan_clients=(1,))
    assert len(seen) == 3 and marked == [False, True, False]


def test_no_malicious_client_leaves_the_round_as_it_was() -> None:
    (honest, _, _), plain = _round(None)
    (seen, _, marked), out = _round(_attack(_Flip, set()))
    assert marked is None and out.attack_metrics == {}
    for h, s in zip(honest, seen, strict=True):
        for a, b in zip(h, s, strict=True):
            np.testing.assert_array_equal(a, b)


class _Shifted(Attack):
    """The malicious clients' labels shifted by one class, their features negated."""

    Config = MaliciousConfig
    poisons_data = True

    def poison_data(self, x, y, client_id):
        return -x, (y + 1) % self.num_classes


def test_a_data_attack_reaches_the_malicious_clients_data_only() -> None:
    from fedlab.data import federate

    cfg = checked("model=logreg", "num_clients=20", "C=0.5")
    clean = federate(cfg)
    attack = _attack(_Shifted, {2, 5})
    data = poisoned(clean, attack)
    for client in range(cfg.num_clients):
        x, y = data.client_data(client)
        x0, y0 = clean.client_data(client)
        if client in (2, 5):
            np.testing.assert_array_equal(x, -x0)
            np.testing.assert_array_equal(y, (y0 + 1) % 10)
        else:
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, y0)
    # The test set, the training arrays and the partition are untouched (a Ray actor's data
    # digest covers them, and they are the same on every process).
    assert data.x_test is clean.x_test and data.y_train is clean.y_train
    assert all(a is b for a, b in zip(data.clients, clean.clients, strict=True))
    assert poisoned(clean, _attack(_Flip, {2})) is clean  # an attack that poisons no data


# -- a whole run ---------------------------------------------------------------------------------


class Exploding(Attack):
    """The malicious clients upload infinities: the mean, and so the model, cannot go on."""

    Config = MaliciousConfig
    poisons_updates = True

    def poison_update(self, update, weight, round_num, client_id):
        return [np.full_like(u, np.inf) for u in update], weight


QUICK = [
    "model=logreg", "client_optimizer=sgd", "client_optimizer.lr=0.1", "server_optimizer=sgd",
    "num_clients=20", "C=0.5", "B=50", "rounds=3",
]  # fmt: skip


def test_a_model_diverging_under_attack_is_a_result_not_an_error(tmp_path, monkeypatch) -> None:
    import fedlab

    conf = tmp_path / "conf" / "attack"
    conf.mkdir(parents=True)
    (conf / "exploding.yaml").write_text(
        "_target_: tests.test_attacks.Exploding\nname: exploding\nfraction: 0.5\n"
    )
    monkeypatch.chdir(tmp_path)
    run = [*QUICK, "attack=exploding"]
    result = fedlab.run(run, config_dirs=[tmp_path / "conf"], progress=False)
    assert result.diverged == "round 1: the mean client update was not finite"
    assert result.rounds == 0 and "diverged at round 1" in result.summary()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (stored,) = client.search_runs(client.get_experiment_by_name("fedlab").experiment_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.tags["fedlab.diverged"] == result.diverged
    assert [s for s, _ in result.history["eval/accuracy"]] == [0]  # what it logged is kept
    # Without malicious clients a diverging run is still an error (a learning rate far too
    # large): tests/test_cli_run.py checks it.
