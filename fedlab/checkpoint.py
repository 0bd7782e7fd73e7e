"""Checkpoints: the server state after a round, written atomically, enough to resume exactly.

A checkpoint is one ``.npz`` file: the flattened server state (global model, server optimizer
state, counters) plus a JSON record of the round, the MLflow run, and the metric history that
``rounds_to_target`` needs. Client sampling and local data order are pure functions of
(seed, round, client) (``fedlab.core.sampling``), so no random-generator state needs saving: a run
resumed at round r continues exactly as an uninterrupted run would.

Its name is a hash of the config minus what does not change the run's numbers
(``NOT_IN_NUMBERS`` below: hardware, ``rounds``, the run name, checkpoint settings, ...), so
re-running the same command finds it, and asking for more rounds extends the same run. That list
is the run-identity policy of fedlab: the report (``fedlab.report``) puts runs that differ only
in those keys and in ``seed`` into one configuration (``configuration_key``).

A checkpoint continues one tracked run, so its name is also scoped by the tracking store and
experiment the run is recorded in (``store_key``): the same config run into another store (a new
``mlflow.db``, a server, ``tracking.experiment=...``) starts its own run there and computes it,
rather than finding another store's checkpoint, answering "nothing left to run" and recording
nothing where it was asked to. Re-logging the other store's run into the new one was the
alternative; it was not taken: the other store may be unreachable (a server since stopped), its
artifacts large, and a half-finished run would mix two stores' histories. Recomputing gives the
same numbers (a run is a pure function of its config), recorded whole where it was asked for.
An algorithm's per-client state lives in files beside it (``fedlab.core.client_state``); the
checkpoint records which file is each client's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedlab.config import RunConfig, run_params
from fedlab.errors import CheckpointError

FORMAT_VERSION = 1

# The keys that do not change a run's numbers: a checkpoint's key leaves them out (a run can be
# resumed or extended with other values), and the report puts runs that differ only in them (and
# in ``seed``) into one configuration. A prefix ending in "." covers a whole group.
NOT_IN_NUMBERS = (
    "hardware.",
    "tracking.",
    "rounds",
    "run_name",
    "checkpoint_every",
    "resume",
    "checkpoint_dir",
    "objective",
    "stop_at_target",
    "callbacks.",  # what is measured and recorded after each round, not what is trained
    "dataset.source",  # every MNIST source gives the same arrays (tests/test_mnist.py)
    "dataset.path",
    "dataset.cache_dir",  # where the preprocessed Shakespeare file is kept
    "placement.address",  # which Ray cluster, not how the cohort is cut
    "placement.cpus_per_actor",  # threads inside an actor: each client is computed alone
)
# The engines compute the same arithmetic, equal up to float32 round-off: one configuration in a
# report, but a checkpoint is bit-exact only on the engine that wrote it, so it keys on this.
# So does the placement of a round's clients: the actors' partial sums are added in another
# order than one process adds the clients' updates (fedlab.backends.fast.placement).
SAME_UP_TO_ROUND_OFF = ("engine", "placement.name", "placement.actors")
# Keys added after runs were checkpointed and recorded, each with the value that computes what
# those runs computed. At that value a key is left out of the checkpoint's key, so the runs'
# checkpoints are still found; the report reads a run recorded without it as having it.
ADDED_LATER: dict[str, object] = {
    "client_optimizer.global_clipnorm": None,
    "server_optimizer.global_clipnorm": None,  # the optimizers share one schema
    "model.initializer": "keras",  # model=char_lstm's
}


def _without_added_defaults(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in ADDED_LATER or v != ADDED_LATER[k]}


def affects_numbers(key: str, exact: bool) -> bool:
    """Whether the dotted config ``key`` changes a run's numbers (bit for bit if ``exact``)."""
    ignored = NOT_IN_NUMBERS if exact else NOT_IN_NUMBERS + SAME_UP_TO_ROUND_OFF
    return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in ignored)


@dataclass
class Checkpoint:
    round: int
    state: list[np.ndarray]  # the server state, flattened (tf.nest order)
    history: dict[int, float]  # test accuracy by evaluated round
    rounds_to_target: int | None
    total_mb: float
    run_id: str | None  # the tracker's run, to continue into
    config_key: str
    client_states: dict[int, int] = field(default_factory=dict)  # client id -> round of its file


def under_attack(params: dict) -> bool:
    """Whether the flat ``params`` (``run_params``) make clients malicious: an attack other
    than ``none`` with a malicious fraction above 0."""
    name = str(params.get("attack.name", "none"))
    return name != "none" and float(params.get("attack.fraction", 0) or 0) > 0


def config_key(cfg: RunConfig) -> str:
    """A short hash of everything that determines the run's numbers."""
    tree = run_params(cfg)
    kept = {key: value for key, value in tree.items() if affects_numbers(key, exact=True)}
    if tree.get("placement.name") == "local":
        # The default placement leaves the key as it was before placement existed, so that
        # those checkpoints are still found.
        kept = {key: value for key, value in kept.items() if not key.startswith("placement.")}
    if not under_attack(tree):
        # So does a run without malicious clients (attack=none, or attack.fraction=0, which
        # computes the same numbers bit for bit): a sweep's runs at fraction 0 are one run.
        kept = {key: value for key, value in kept.items() if not key.startswith("attack.")}
    text = json.dumps(_without_added_defaults(kept), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def configuration_key(cfg: RunConfig) -> str:
    """A short hash of what makes a run's numbers, up to float32 round-off, without its seed:
    the configuration the report (``fedlab.report.grouping``) gathers seeds of. Runs that
    differ only in ``seed``, bookkeeping, engine or placement share it."""
    tree = run_params(cfg)
    kept = {k: v for k, v in tree.items() if k != "seed" and affects_numbers(k, exact=False)}
    text = json.dumps(_without_added_defaults(kept), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_key(store: str) -> str:
    """A short hash of a tracking store and experiment (``Tracker.store``), which scopes a
    checkpoint to the runs of that store (see the module docstring)."""
    return hashlib.sha256(store.encode()).hexdigest()[:8]


def checkpoint_path(cfg: RunConfig, default_dir: Path, key: str, store: str | None = None) -> Path:
    """Where the checkpoint of the config with ``config_key`` ``key`` lives, for runs recorded
    in ``store`` (``Tracker.store``; None: the name before checkpoints were scoped by store)."""
    directory = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else default_dir
    if store is None:
        return directory / f"run-{key}.npz"
    return directory / f"run-{key}-{store_key(store)}.npz"


def client_state_dir(path: Path) -> Path:
    """Where the per-client state files of the checkpoint at ``path`` live."""
    return path.with_name(path.stem + ".clients")


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` so that a crash at any moment leaves the previous one intact:
    write a temporary file beside it, flush it to disk, then rename it over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT_VERSION,
        "round": checkpoint.round,
        "history": {str(r): a for r, a in checkpoint.history.items()},
        "rounds_to_target": checkpoint.rounds_to_target,
        "total_mb": checkpoint.total_mb,
        "run_id": checkpoint.run_id,
        "config_key": checkpoint.config_key,
        "num_arrays": len(checkpoint.state),
        "client_states": {str(c): r for c, r in checkpoint.client_states.items()},
    }
    arrays = {f"state_{i:04d}": np.asarray(a) for i, a in enumerate(checkpoint.state)}
    write_npz(path, {"meta": np.array(json.dumps(meta)), **arrays})
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` to ``path`` as an .npz, so that a crash leaves the old file or the new one:
    a temporary file beside it, flushed to disk, then renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, expected_key: str) -> Checkpoint | None:
    """The checkpoint at ``path``, None if there is none; CheckpointError if it is unusable."""
    if not path.exists():
        return None
    hint = f"delete {path} or run with resume=false to start over"
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            state = [npz[f"state_{i:04d}"] for i in range(meta["num_arrays"])]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt ({err}); {hint}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')}, expected {FORMAT_VERSION}; {hint}"
        )
    if meta["config_key"] != expected_key:
        raise CheckpointError(
            f"checkpoint {path} belongs to another config ({meta['config_key']}, this one is "
            f"{expected_key}); {hint}"
        )
    return Checkpoint(
        round=int(meta["round"]),
        state=state,
        history={int(r): float(a) for r, a in meta["history"].items()},
        rounds_to_target=meta["rounds_to_target"],
        total_mb=float(meta["total_mb"]),
        run_id=meta["run_id"],
        config_key=meta["config_key"],
        client_states={int(c): int(r) for c, r in meta.get("client_states", {}).items()},
    )
