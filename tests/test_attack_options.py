"""Each registered attack (``fedlab/attacks/``) against its formula on hand-made updates or real
client data, and a short real run of each family through ``fedlab.run``. Where an attack acts in
a round is checked in ``tests/test_attacks.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlab import streams
from fedlab.attacks import ATTACKS, build_attack
from fedlab.errors import ConfigError
from tests.conftest import CONF, checked

SMALL = ["model=logreg", "num_clients=20", "C=0.5"]


def _attack(name: str, *overrides: str):
    return build_attack(checked(f"attack={name}", *SMALL, *overrides))


def _update(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]


def test_every_attack_has_its_yaml_and_refuses_engine_tff() -> None:
    # fedlab's own (a test may have registered an outside attack in this process)
    own = {name for name, entry in ATTACKS.items() if entry.__module__.startswith("fedlab.")}
    assert {p.stem for p in (CONF / "attack").glob("*.yaml")} == own
    for name in own:
        if name == "none":
            continue
        with pytest.raises(ConfigError, match=f"attack={name} cannot run on engine=tff"):
            checked(f"attack={name}", "engine=tff")


# -- sign_flip ---------------------------------------------------------------------------------


def test_sign_flip_uploads_minus_scale_times_the_update() -> None:
    update = _update()
    for overrides, scale in (((), 4.0), (("attack.scale=1.5",), 1.5)):
        got, weight = _attack("sign_flip", *overrides).poison_update(update, 12.0, 3, 1)
        assert weight == 12.0
        for g, u in zip(got, update, strict=True):
            np.testing.assert_array_equal(g, np.float32(-scale) * u)


BAD = [
    (["attack.fraction=-0.1"], ["attack.fraction=-0.1", "0 <= fraction < 1"]),
    (["attack.fraction=0.5", "aggregator=median"], ["aggregator=median", "honest majority"]),
    (["attack.scale=0"], ["attack.scale=0", "> 0"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_sign_flip_input_is_one_line_through_compose(overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked("attack=sign_flip", *overrides)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


QUICK = [
    "model=2nn", "client_optimizer=sgd", "client_optimizer.lr=0.1", "server_optimizer=sgd",
    "num_clients=20", "C=0.5", "B=20", "rounds=3", "tracking=none", "checkpoint_every=0",
]  # fmt: skip


def test_a_run_under_sign_flipping_logs_the_malicious_clients(tmp_path) -> None:
    import fedlab

    cfg = checked(*QUICK, "attack=sign_flip", "attack.fraction=0.3")
    attack = build_attack(cfg)
    result = fedlab.run(
        [*QUICK, "attack=sign_flip", "attack.fraction=0.3", "aggregator=median"],
        output_dir=tmp_path,
        progress=False,
    )
    took_part = dict(result.history["attack/malicious_clients"])
    for round_num in (1, 2, 3):
        sampled = streams.sampling(cfg.seed, round_num).choice(20, 10, replace=False)
        assert took_part[round_num] == sum(int(c) in attack.malicious for c in sampled)
    assert len(attack.malicious) == 6


# -- gaussian ----------------------------------------------------------------------------------


def test_gaussian_uploads_seeded_normal_coordinates_whatever_the_update() -> None:
    attack = _attack("gaussian", "attack.std=3.0", "seed=5")
    got, weight = attack.poison_update(_update(0), 7.0, 2, 4)
    again, _ = attack.poison_update(_update(1), 7.0, 2, 4)  # another honest update: same draw
    rng = streams.attack_update(5, 2, 4)
    want = [rng.normal(0.0, 3.0, (3, 2)), rng.normal(0.0, 3.0, 2)]
    assert weight == 7.0
    for g, a, w in zip(got, again, want, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, a)
        np.testing.assert_array_equal(g, w.astype(np.float32))
    other, _ = attack.poison_update(_update(0), 7.0, 3, 4)  # another round: another draw
    assert not np.array_equal(other[0], got[0])
    big = attack.poison_update([np.zeros(200_000, np.float32)], 1.0, 1, 1)[0][0]
    assert abs(big.std() - 3.0) < 0.05 and abs(big.mean()) < 0.05


# -- label_flip --------------------------------------------------------------------------------


def test_label_flip_reaches_the_malicious_clients_data_in_every_data_path() -> None:
    from fedlab.data import federate
    from fedlab.experiment import dataset_parts, federated_data

    cfg = checked("attack=label_flip", "attack.fraction=0.3", *SMALL)
    attack = build_attack(cfg)
    clean = federate(cfg)
    own = federated_data(cfg)  # the run's own data
    actor, parts = dataset_parts(cfg)  # what a Ray actor builds from the config
    assert parts.attack.malicious == attack.malicious and len(attack.malicious) == 6
    for client in range(cfg.num_clients):
        x0, y0 = clean.client_data(client)
        for data in (own, actor):
            x, y = data.client_data(client)
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, 9 - y0 if client in attack.malicious else y0)
    np.testing.assert_array_equal(own.y_test, clean.y_test)


# -- backdoor ----------------------------------------------------------------------------------


def test_the_trigger_reaches_the_malicious_clients_only() -> None:
    from fedlab.attacks.backdoor import TRIGGER, stamp
    from fedlab.data import federate
    from fedlab.experiment import federated_data

    cfg = checked("attack=backdoor", "attack.fraction=0.3", *SMALL)
    attack = build_attack(cfg)
    clean, data = federate(cfg), federated_data(cfg)
    rows, cols = zip(*TRIGGER, strict=True)
    for client in range(cfg.num_clients):
        x0, y0 = clean.client_data(client)
        x, y = data.client_data(client)
        if client not in attack.malicious:
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, y0)
            continue
        idx = attack.poisoned_indices(len(x0), client)
        assert len(idx) == math.floor(0.3125 * len(x0))
        rest = np.setdiff1d(np.arange(len(x0)), idx)
        images = x.reshape(-1, 28, 28)
        assert np.all(images[idx][:, rows, cols] == 1.0) and np.all(y[idx] == 2)
        np.testing.assert_array_equal(x[rest], x0[rest])
        np.testing.assert_array_equal(y[rest], y0[rest])
        np.testing.assert_array_equal(x[idx], stamp(x0[idx], (28, 28, 1)))
        # Only the trigger's 32 pixels change.
        changed = (x[idx] != x0[idx]).reshape(len(idx), 28, 28)
        assert not changed[:, [r for r in range(28) if r not in (0, 3)], :].any()
    # The test set is clean; the backdoor's test set is every non-target image, triggered.
    np.testing.assert_array_equal(data.x_test, clean.x_test)
    x_bad, y_bad = attack.triggered(clean.x_test, clean.y_test)
    assert len(x_bad) == int(np.sum(clean.y_test != 2)) and np.all(y_bad == 2)
    assert np.all(x_bad.reshape(-1, 28, 28)[:, rows, cols] == 1.0)


def test_backdoor_is_refused_on_shakespeare_and_outside_the_classes() -> None:
    shakespeare = ["dataset=shakespeare", "model=char_lstm", "partition=natural", "num_clients=10"]
    for overrides, words in (
        (shakespeare, ["attack=backdoor", "dataset=shakespeare", "a class at every position"]),
        (["attack.target=10"], ["attack.target=10", "0 <= target < 10"]),
        (["attack.poison_fraction=0"], ["attack.poison_fraction=0", "0 < poison_fraction"]),
    ):
        with pytest.raises(ConfigError) as info:
            checked("attack=backdoor", *overrides)
        assert "\n" not in str(info.value)
        for word in words:
            assert word in str(info.value), str(info.value)


def test_a_backdoor_run_measures_its_success(tmp_path) -> None:
    import fedlab

    result = fedlab.run(
        [*QUICK, "attack=backdoor", "attack.fraction=0.3", "eval_every=3"],
        output_dir=tmp_path,
        progress=False,
    )
    steps = [s for s, _ in result.history["eval/backdoor_accuracy"]]
    assert steps == [0, 3]
    assert all(0 <= a <= 1 for _, a in result.history["eval/backdoor_accuracy"])
    clean = fedlab.run([*QUICK, "rounds=1"], output_dir=tmp_path / "clean", progress=False)
    assert "eval/backdoor_accuracy" not in clean.history  # measured under a backdoor only


# -- scaling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "boost"),
    [
        (["server_optimizer=sgd"], 10.0),  # n / η with η = 1: ten clients a round
        (["server_optimizer=sgd", "server_optimizer.lr=0.5"], 20.0),
        (["server_optimizer=adam"], 10.0),  # not η times the mean: n
        (["attack.boost=3"], 3.0),
    ],
)
def test_scaling_boosts_the_backdoored_update_by_n_over_eta(overrides, boost) -> None:
    attack = _attack("scaling", *overrides)
    assert attack.boost == boost and attack.poisons_data and attack.backdoor
    update = _update()
    got, weight = attack.poison_update(update, 5.0, 1, 0)
    assert weight == 5.0
    for g, u in zip(got, update, strict=True):
        np.testing.assert_array_equal(g, np.float32(boost) * u)


# -- the omniscient attacks --------------------------------------------------------------------


def _round_updates(n: int = 7, seed: int = 3) -> list[list[np.ndarray]]:
    return [_update(seed + i) for i in range(n)]


MALICIOUS = [False, True, False, False, True, False, False]


def test_alie_z_is_baruchs_z_max() -> None:
    from statistics import NormalDist

    from fedlab.attacks.alie import z_max

    # n = 50, f = 12: s = 26 - 12 = 14 supporters, z = Φ^-1(36/50) ≈ 0.583.
    assert z_max(50, 12) == pytest.approx(NormalDist().inv_cdf(36 / 50))
    assert z_max(50, 12) == pytest.approx(0.5828, abs=1e-4)
    assert z_max(10, 1) == 0.0  # s = 5: the median itself is enough
    assert math.isfinite(z_max(10, 8))  # a malicious majority: s kept at 1


def test_alie_uploads_mean_minus_z_std_of_the_benign_updates() -> None:
    from fedlab.attacks.alie import z_max

    updates = _round_updates()
    got, metrics = _attack("alie").collude(updates, MALICIOUS, 1)
    benign = [u for u, bad in zip(updates, MALICIOUS, strict=True) if not bad]
    z = z_max(7, 2)
    assert metrics == {"z": z}
    for i, (update, bad) in enumerate(zip(got, MALICIOUS, strict=True)):
        for k, layer in enumerate(update):
            stacked = np.stack([b[k] for b in benign]).astype(np.float64)
            want = stacked.mean(0) - z * stacked.std(0, ddof=1) if bad else updates[i][k]
            np.testing.assert_allclose(layer, want, rtol=1e-6, atol=1e-7)
    fixed, metrics = _attack("alie", "attack.z=1.5").collude(updates, MALICIOUS, 1)
    assert metrics == {"z": 1.5}


def test_ipm_uploads_minus_epsilon_times_the_benign_mean() -> None:
    updates = _round_updates()
    got, _ = _attack("ipm", "attack.epsilon=0.5").collude(updates, MALICIOUS, 1)
    benign = [u for u, bad in zip(updates, MALICIOUS, strict=True) if not bad]
    for i, (update, bad) in enumerate(zip(got, MALICIOUS, strict=True)):
        for k, layer in enumerate(update):
            mean = np.mean([b[k] for b in benign], axis=0, dtype=np.float64)
            np.testing.assert_allclose(layer, -0.5 * mean if bad else updates[i][k], rtol=1e-6)
    everyone = [True] * 7  # no benign update: the colluders use their own honest ones
    got, _ = _attack("ipm").collude(updates, everyone, 1)
    np.testing.assert_allclose(got[0][1], -0.1 * np.mean([u[1] for u in updates], 0), rtol=1e-6)


@pytest.mark.parametrize("perturbation", ["unit_vec", "sign", "std"])
def test_min_max_moves_as_far_as_the_honest_spread_allows(perturbation) -> None:
    from fedlab.aggregators.base import flatten

    updates = _round_updates()
    attack = _attack("min_max", f"attack.perturbation={perturbation}")
    got, metrics = attack.collude(updates, MALICIOUS, 1)
    benign = np.stack([flatten(u) for u, bad in zip(updates, MALICIOUS, strict=True) if not bad])
    mean = benign.mean(0)
    p = {
        "unit_vec": mean / np.linalg.norm(mean),
        "sign": np.sign(mean),
        "std": benign.std(0, ddof=1),
    }[perturbation]
    bound = max(np.sum((a - b) ** 2) for a in benign for b in benign)

    def farthest(gamma: float) -> float:
        return max(np.sum((benign - (mean - gamma * p)) ** 2, axis=1))

    gamma = metrics["gamma"]
    assert 0 < gamma < 10 and farthest(gamma) <= bound  # within the honest spread ...
    assert farthest(gamma + 1e-4) > bound  # ... and as far as it goes (the search's precision)
    crafted = mean - gamma * p
    for update, bad in zip(got, MALICIOUS, strict=True):
        if bad:
            np.testing.assert_allclose(flatten(update), crafted, rtol=1e-5, atol=1e-6)


def test_an_omniscient_run_crafts_from_the_round(tmp_path) -> None:
    import fedlab

    result = fedlab.run(
        [*QUICK, "attack=alie", "attack.fraction=0.3", "aggregator=median"],
        output_dir=tmp_path,
        progress=False,
    )
    took_part = [r for r, n in result.history["attack/malicious_clients"] if n > 0]
    assert [r for r, _ in result.history["attack/z"]] == took_part  # crafted when it could
    assert took_part and all(v >= 0 for _, v in result.history["attack/z"])


# -- with DP and compression -------------------------------------------------------------------


def test_attacks_with_dp_and_compression_compose_or_are_refused_in_one_line() -> None:
    # A client-side attack, then the client's compressor encodes what it sends.
    assert checked("attack=sign_flip", "compression=topk").compression.name == "topk"
    # Any attack, then DP-FedAvg's server-side clipping and noise (colluders' crafted updates too).
    for attack in ("sign_flip", "alie", "backdoor"):
        cfg = checked(f"attack={attack}", "privacy=dp_fedavg", "client_optimizer=sgd")
        assert cfg.privacy.name == "dp_fedavg"
    # An omniscient attack crafts after the clients encoded: not in the wire format.
    for attack in ("alie", "ipm", "min_max"):
        with pytest.raises(ConfigError) as info:
            checked(f"attack={attack}", "compression=quantize")
        message = str(info.value)
        assert "\n" not in message and "compression=quantize" in message, message
        assert "wire format" in message and "allowed: compression=none" in message, message
