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

import pytest

from fedlab import streams
from fedlab.aggregators import AGGREGATORS
from fedlab.attacks import ATTACKS, Attack, MaliciousConfig, malicious_clients
from fedlab.checkpoint import config_key
from fedlab.errors import ConfigError
from tests.conftest import checked

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

    from fedlab.checkpoint import affects_numbers
    from fedlab.config import run_params

    params = {
        k: v
        for k, v in run_params(cfg).items()
        if affects_numbers(k, exact=True) and not k.startswith(("placement.", "attack."))
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
