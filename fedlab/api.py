"""fedlab from Python: ``fedlab.compose`` and ``fedlab.run``, for notebooks and scripts.

    import fedlab

    cfg = fedlab.compose(["algorithm=fedprox", "rounds=5"])   # the checked RunConfig
    result = fedlab.run(["algorithm=fedprox", "rounds=5"])    # one run, as the command line's
    result.history["eval/accuracy"]                           # [(0, 0.098), (1, 0.61), ...]

Both take the command line's overrides, with the same config files, the same one-line errors (as
``fedlab.errors.ConfigError`` and its kin, raised), the same checkpoints (re-running the same
overrides continues the run) and the same tracking (``./mlflow.db`` by default). A plug-in from
outside fedlab is found as on the command line: ``hydra.searchpath=[file:///path/to/conf]``
among the overrides, or ``config_dirs=[...]``.

Hydra's global state is entered and left inside each call, so neither may be called from inside
a running Hydra application (use the entry point's own config there).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from fedlab.config import RunConfig, hydra_overrides, register_configs
from fedlab.errors import ConfigError

# fedlab's own options: conf/ at the repository's top, the package fedlab.conf (pyproject.toml
# maps it), in a wheel and in the checkout alike.
CONFIG_MODULE = "fedlab.conf"


def _with_searchpath(overrides: list[str], config_dirs: Sequence[str | Path]) -> list[str]:
    if not config_dirs:
        return overrides
    paths = ",".join(f"file://{Path(d).resolve()}" for d in config_dirs)
    return [*overrides, f"hydra.searchpath=[{paths}]"]


def compose(overrides: Sequence[str] = (), *, config_dirs: Sequence[str | Path] = ()) -> RunConfig:
    """The checked config of ``overrides`` (``["partition=shards", "C=0.2"]``), as the command
    line composes it; ``config_dirs``: the user's own config folders (options of their own
    plug-ins), searched after fedlab's. Bad input raises ``ConfigError`` with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import open_dict

    from fedlab.describe import describe
    from fedlab.validation import typed

    register_configs()
    overrides = _with_searchpath(hydra_overrides(list(overrides)), config_dirs)
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            composed = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    except Exception as err:
        message = describe(err, overrides)
        if message is None:
            raise
        raise ConfigError(message) from None
    hydra_node = composed.hydra
    choices = {str(k): str(v) for k, v in hydra_node.runtime.choices.items() if v is not None}
    with open_dict(composed):
        del composed["hydra"]
    return typed(composed, choices)


def run(
    overrides: Sequence[str] = (),
    *,
    config_dirs: Sequence[str | Path] = (),
    output_dir: str | Path | None = None,
    progress: bool = True,
):
    """One run of ``overrides``, to the end: a ``fedlab.experiment.RunResult`` whose ``history``
    maps every metric the run logged to its ``(round, value)`` pairs.

    Checkpoints go to ``./checkpoints`` and runs to ``tracking.uri`` (default ``./mlflow.db``),
    as on the command line, so the same call continues an interrupted run; ``output_dir``
    (default ``outputs/DATE/TIME``) receives the run's files. ``progress``: the progress bar
    (tqdm's notebook widget inside Jupyter).
    """
    from fedlab import logs, sweep
    from fedlab.experiment import describe_run
    from fedlab.experiment import run as run_experiment
    from fedlab.tracking import create_tracker, default_tracking_uri

    given = list(overrides)
    cfg = compose(given, config_dirs=config_dirs)
    cwd = Path.cwd()
    if output_dir is None:
        output_dir = Path("outputs") / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    name = cfg.run_name or sweep.job_name(given, [])
    logs.log.info("%s: %s", name, describe_run(cfg))
    with logs.step("opening the tracking store"):
        tracker = create_tracker(cfg.tracking, default_tracking_uri(cwd))
    return run_experiment(
        cfg,
        output_dir=Path(output_dir),
        tracker=tracker,
        run_name=name,
        overrides=" ".join(given),
        progress=progress,
        checkpoint_dir=cwd / "checkpoints",
    )
