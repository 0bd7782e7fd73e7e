"""Checkpoints: keyed by what determines the run, written atomically, refused when unusable."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab import checkpoint as ck
from tests.conftest import checked


def _cfg(compose_cfg, *overrides: str):
    return checked(*overrides)


def _sample(key: str, round_num: int = 3) -> ck.Checkpoint:
    rng = np.random.default_rng(round_num)
    return ck.Checkpoint(
        round=round_num,
        state=[rng.random((4, 3), dtype=np.float32), np.array(7, np.int32)],
        history={0: 0.1, 2: 0.5, 3: 0.6},
        rounds_to_target=2,
        total_mb=12.5,
        run_id="abc123",
        config_key=key,
    )


def test_key_follows_what_determines_the_numbers(compose_cfg) -> None:
    base = ck.config_key(_cfg(compose_cfg))
    # Same run, more rounds, other hardware or checkpoint settings: same key (resume/extend).
    for same in (["rounds=50"], ["hardware.intra_op_threads=1"], ["checkpoint_every=5"]):
        assert ck.config_key(_cfg(compose_cfg, *same)) == base, same
    for other in (["seed=1"], ["client_optimizer.lr=0.01"], ["partition=shards"], ["C=0.2"]):
        assert ck.config_key(_cfg(compose_cfg, *other)) != base, other


def test_save_load_round_trip(tmp_path) -> None:
    path = tmp_path / "run.npz"
    saved = _sample("k1")
    ck.save(path, saved)
    loaded = ck.load(path, "k1")
    assert loaded.round == 3 and loaded.run_id == "abc123" and loaded.rounds_to_target == 2
    assert loaded.history == saved.history and loaded.total_mb == 12.5
    for a, b in zip(loaded.state, saved.state, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert ck.load(tmp_path / "none.npz", "k1") is None


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "run.npz"
    ck.save(path, _sample("k1", round_num=3))

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(ck.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        ck.save(path, _sample("k1", round_num=4))
    assert ck.load(path, "k1").round == 3
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary file left


def test_corrupt_or_foreign_checkpoints_are_refused_in_one_line(tmp_path) -> None:
    path = tmp_path / "run.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError) as info:
        ck.load(path, "k1")
    assert "corrupt" in str(info.value) and "resume=false" in str(info.value)
    assert "\n" not in str(info.value)
    ck.save(path, _sample("other-config"))
    with pytest.raises(ck.CheckpointError, match="belongs to another config"):
        ck.load(path, "k1")


def test_checkpoint_every_must_not_be_negative(compose_cfg) -> None:
    from fedlab.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_every=-1"):
        _cfg(compose_cfg, "checkpoint_every=-1")
