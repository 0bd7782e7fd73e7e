"""Checkpoints: keyed by what determines the run, written atomically, refused when unusable."""

from __future__ import annotations

from pathlib import Path

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


# -- a checkpoint continues a run of its own tracking store ------------------------------------

# A small run in this process: the 2NN, 5 clients a round, engine=fast.
SMALL = [
    "model=2nn",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "C=0.05",
    "B=50",
    "rounds=1",
    "tracking.log_model=false",
]


def _store(path: Path):
    from fedlab.tracking.mlflow import MlflowTracker

    return MlflowTracker(uri=f"sqlite:///{path}", experiment="fedlab")


def _runs(path: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    experiment = client.get_experiment_by_name("fedlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _accuracy(path: Path, run_id: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{path}").get_metric_history(run_id, "eval/accuracy")
    return sorted((m.step, m.value) for m in history)


def test_a_checkpoint_made_under_another_store_does_not_stand_in_for_a_run_here(
    tmp_path: Path, caplog
) -> None:
    """Issue 23: a run tracked in store A left its checkpoint in ./checkpoints; the same config
    run into store B answered "nothing left to run" and B recorded nothing."""
    from fedlab.experiment import run

    cfg = checked(*SMALL)
    checkpoints = tmp_path / "checkpoints"
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"

    def run_into(db: Path, name: str):
        return run(cfg, output_dir=tmp_path / name, tracker=_store(db),
                   checkpoint_dir=checkpoints, progress=False)  # fmt: skip

    first = run_into(a_db, "a")
    second = run_into(b_db, "b")
    (run_a,), (run_b,) = _runs(a_db), _runs(b_db)
    assert run_b.info.status == "FINISHED"
    assert run_b.info.run_id in second.location and "b.db" in second.location
    # B holds the whole run, computed again: the same numbers as A's.
    assert [s for s, _ in _accuracy(b_db, run_b.info.run_id)] == [0, 1]
    assert _accuracy(b_db, run_b.info.run_id) == _accuracy(a_db, run_a.info.run_id)
    assert second.final_accuracy == first.final_accuracy
    assert len(list(checkpoints.glob("run-*.npz"))) == 2  # one per store

    # Each store's own checkpoint answers its own re-run: nothing left to run, no new run.
    again = run_into(b_db, "b2")
    assert len(_runs(b_db)) == 1 and run_b.info.run_id in again.location

    # A run deleted in the MLflow UI is recorded again, with a warning, not left missing.
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{b_db}").delete_run(run_b.info.run_id)
    with caplog.at_level("WARNING", logger="fedlab"):
        third = run_into(b_db, "b3")
    (active,) = _runs(b_db)
    assert active.info.run_id != run_b.info.run_id and active.info.run_id in third.location
    assert [s for s, _ in _accuracy(b_db, active.info.run_id)] == [0, 1]
    assert any("does not hold" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_checkpoint_from_before_the_store_scope_is_taken_over_by_its_own_store(
    tmp_path: Path,
) -> None:
    from fedlab.experiment import run

    cfg = checked(*SMALL)
    checkpoints = tmp_path / "checkpoints"
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    run(cfg, output_dir=tmp_path / "a", tracker=_store(a_db), checkpoint_dir=checkpoints,
        progress=False)  # fmt: skip
    (scoped,) = checkpoints.glob("run-*.npz")
    legacy = ck.checkpoint_path(cfg, checkpoints, ck.config_key(cfg))  # run-<key>.npz
    scoped.rename(legacy)
    # Another store does not take it over (its run is not there) ...
    run(cfg, output_dir=tmp_path / "b", tracker=_store(b_db), checkpoint_dir=checkpoints,
        progress=False)  # fmt: skip
    assert legacy.exists() and len(_runs(b_db)) == 1
    # ... its own store does: nothing left to run, under the scoped name now.
    again = run(cfg, output_dir=tmp_path / "a2", tracker=_store(a_db),
                checkpoint_dir=checkpoints, progress=False)  # fmt: skip
    assert not legacy.exists() and len(_runs(a_db)) == 1
    assert _runs(a_db)[0].info.run_id in again.location


def test_the_configuration_key_gathers_seeds_as_the_report_does() -> None:
    base = ck.configuration_key(checked())
    for same in (["seed=3"], ["engine=tff"], ["rounds=5"], ["tracking=none"]):
        assert ck.configuration_key(checked(*same)) == base, same
    for other in (["C=0.2"], ["partition=shards"], ["client_optimizer.lr=0.01"]):
        assert ck.configuration_key(checked(*other)) != base, other
    # The checkpoint's key is stricter: seed and engine are part of a run's exact numbers.
    assert ck.config_key(checked("seed=3")) != ck.config_key(checked())
