"""The Hydra entry point: ``python -m fedlab [GROUP=OPTION ...] [KEY=VALUE ...]``.

Compose the config (Hydra checks keys and types against ``fedlab.config``), convert and check it
once (``fedlab.validation``: each option's own schema, then the cross-field rules), and hand it
to ``fedlab.experiment.run``.

Bad input ends in one line on stderr naming the value and what is allowed, and exit status 2;
``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fedlab.config import hydra_overrides, register_configs
from fedlab.describe import FULL_ERROR, describe
from fedlab.errors import TERMINATION_REQUESTED, DivergedError, Terminated
from fedlab.quiet import silence_sweeper_plugins
from fedlab.validation import typed

register_configs()
silence_sweeper_plugins()


def _on_sigterm(signum, frame):
    TERMINATION_REQUESTED.set()
    raise Terminated()


# conf/ at the repository's top level is the package fedlab.conf (pyproject.toml maps it), in a
# wheel and in the checkout's editable install alike.
@hydra.main(version_base="1.3", config_path="pkg://fedlab.conf", config_name="config")
def task(dict_cfg: DictConfig) -> float | None:
    """One run; returns its ``objective`` (the value a sweeper optimizes), or None for a run
    that diverged in a sweep."""
    try:
        return _run(dict_cfg)
    except Exception as err:
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        if isinstance(err, DivergedError) and multirun and not FULL_ERROR:
            # In a sweep, divergence is a result, not a crash: the run is already FAILED in
            # MLflow, and no value makes the Optuna sweeper record a FAILED trial (the search
            # goes on past it if hydra.sweeper.max_failure_rate allows; the default 0 stops).
            print(f"fedlab: error: {err}", file=sys.stderr)
            return None
        message = describe(err)
        if message is None or FULL_ERROR or multirun:
            raise  # in a multirun, Hydra records the job as failed
        # Exit here: raising would make Hydra print "Error executing job ..." first.
        print(f"fedlab: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(dict_cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    cfg = typed(dict_cfg, dict(hydra_cfg.runtime.choices))
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    from fedlab import sweep

    if multirun:
        sweep.check_direction(cfg.objective.value, hydra_cfg.sweeper.get("direction"))

    from fedlab import logs
    from fedlab.experiment import describe_run, run  # TensorFlow is imported by run
    from fedlab.tracking import create_tracker

    overrides = list(hydra_cfg.overrides.task)
    name = cfg.run_name or sweep.job_name(overrides, [])
    logging.getLogger("fedlab").info("%s: %s", name, describe_run(cfg))
    with logs.step("opening the tracking store"):
        tracker = create_tracker(cfg.tracking, sweep.default_tracking_uri(hydra_cfg.runtime.cwd))
    trial = link = None
    if multirun and sweep.sweeper_name(hydra_cfg) == "optuna":
        trial = sweep.optuna_trial_number(hydra_cfg.sweeper, overrides)
        link = sweep.trial_link(hydra_cfg.sweeper, trial)
    # A job finds its sweep's parent run in MLflow, on whatever machine the launcher ran it.
    in_sweep = sweep.find_sweep(tracker, str(hydra_cfg.sweep.dir)) if multirun else None
    name = sweep.job_name(overrides, in_sweep.swept_keys if in_sweep else [])
    log_file = logs.log_file()  # Hydra's job log (conf/hydra/job_logging/fedlab.yaml)
    if multirun:
        trial_text = f", Optuna trial {trial}" if trial is not None else ""
        logging.getLogger("fedlab").info(
            "sweep %s, job %d%s; log: %s", hydra_cfg.sweep.dir, hydra_cfg.job.num, trial_text,
            log_file,
        )  # fmt: skip
    result = run(
        cfg,
        output_dir=Path(hydra_cfg.runtime.output_dir),
        checkpoint_dir=Path(hydra_cfg.runtime.cwd) / "checkpoints",
        tracker=tracker,
        run_name=cfg.run_name or name,
        overrides=" ".join(overrides),
        # In a terminal, the progress bar; elsewhere (a pipe, nohup, SLURM) log lines instead.
        progress=sys.stderr.isatty(),
        tags=sweep.job_tags(in_sweep, hydra_cfg.job.num, trial) if multirun else None,
        log_file=log_file,
        trial=link,
    )
    if trial is not None and tracker.run_id:
        sweep.link_trial(hydra_cfg.sweeper, trial, tracker.run_id)
    print(result.summary())
    return sweep.objective_value(cfg.objective, result, cfg.rounds)


def _exit_now(code: int) -> None:
    """Leave at once after Ctrl-C or SIGTERM, once the run is marked KILLED and checkpointed.

    ``engine=fast`` trains clients on worker threads (fedlab.backends.fast), and Python joins
    those at exit: a client in the middle of a long local training (E=10^6) kept a SIGTERM'd run
    alive at 65% CPU until its round would have ended. The atexit handlers still run (a sweep's
    parent run is ended there); the thread joins do not.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.argv[1:] = hydra_overrides(sys.argv[1:])
    # Let Hydra raise instead of printing its multi-line report, so that bad input becomes one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
    except Terminated:
        print("fedlab: terminated", file=sys.stderr)
        _exit_now(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("fedlab: interrupted", file=sys.stderr)
        _exit_now(128 + signal.SIGINT)
    except Exception as err:
        message = describe(err)
        if message is None or FULL_ERROR:
            raise
        print(f"fedlab: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
