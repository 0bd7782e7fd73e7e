#!/usr/bin/env python
"""What pruning saves on a real Optuna search: the same search run twice, with and without it.

Usage (from the repository root):

    nice -n 19 ./.venv/bin/python scripts/pruning_saving.py                 # 12 trials x 20 rounds
    nice -n 19 ./.venv/bin/python scripts/pruning_saving.py --trials 20 --rounds 30 --out /tmp/p

The search is ``hparams_search=lr`` (TPE over the client and server learning rates, maximizing
the best test accuracy) on the 2NN with client and server SGD, MNIST IID, K=100, C=0.1, B=10,
E=1, run seed 0 and sampler seed 0, each through the real command line in a fresh directory of
its own (its own ``optuna.db``, ``mlflow.db`` and checkpoints, so that nothing is shared):

- **pruned**: the preset as it is (``callbacks.pruning``: Optuna's median pruner on the test
  accuracy, after ``--startup`` finished trials);
- **not pruned**: the same with ``callbacks.pruning.pruner=none`` (Optuna's NopPruner: the
  trials still report their accuracy, and none is stopped).

Both searches draw the same first trials (TPE samples at random, from the sampler's seed, until
10 trials have finished); after those, what TPE proposes depends on what it has seen, so the
later trials may differ. Printed per search: trials (complete, pruned), the rounds trained over
all trials, the wall time of the whole command, the best value found with its trial, and the
machine's load average when the search started and ended (the searches run one after the other).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def search(where: Path, trials: int, rounds: int, startup: int, pruned: bool) -> dict:
    where.mkdir(parents=True)
    args = [
        sys.executable, "-m", "fedlab", "-m", "hparams_search=lr", "model=2nn",
        "client_optimizer=sgd", "server_optimizer=sgd", f"rounds={rounds}", "seed=0",
        f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.sampler.seed=0",
        "tracking.log_model=false",
    ]  # fmt: skip
    if pruned:
        args.append(f"+callbacks.pruning.pruner_args.n_startup_trials={startup}")
    else:
        args.append("callbacks.pruning.pruner=none")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(args, cwd=where, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
    (where / "stdout.txt").write_text(done.stdout)
    (where / "stderr.txt").write_text(done.stderr)
    if done.returncode:
        sys.exit(f"the search in {where} failed ({done.returncode}); see {where}/stderr.txt")

    import optuna
    from mlflow.tracking import MlflowClient

    from fedlab.quiet import silence_sweeper_plugins

    silence_sweeper_plugins()  # the study's stored distributions, read back
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name="fedlab-lr-iid-2nn-sgd-sgd", storage=f"sqlite:///{where / 'optuna.db'}"
    )
    client = MlflowClient(f"sqlite:///{where / 'mlflow.db'}")
    rounds_trained = 0
    for trial in study.trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        rounds_trained += max(steps, default=0)
    states = [t.state.name for t in study.trials]
    best = study.best_trial
    return {
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "rounds": rounds_trained,
        "wall_s": wall,
        "best": f"{best.value:.4f} (trial {best.number})",
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--startup", type=int, default=5, help="finished trials before pruning")
    parser.add_argument("--out", type=Path, default=None, help="where the searches run")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pruning-saving-"))
    print(f"searches in {out}", file=sys.stderr)
    results = {}
    for name, pruned in (("pruned", True), ("not pruned", False)):
        results[name] = search(out / name.replace(" ", "_"), args.trials, args.rounds,
                               args.startup, pruned)  # fmt: skip
        print(f"{name}: {results[name]}", file=sys.stderr)
    print(
        "| search | trials | complete | pruned | rounds trained | wall time | best value "
        "| load (1-min average, start → end) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['trials']} | {r['complete']} | {r['pruned']} | {r['rounds']} "
            f"| {r['wall_s']:.0f} s | {r['best']} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
