#!/usr/bin/env python
"""What an algorithm's per-client state (SCAFFOLD's control variates, Ditto's personal models,
FedPer's heads) costs: memory, disk, and the time a round's checkpoint spends writing it.

Usage (from the repository root):

    ./.venv/bin/python scripts/client_state_cost.py                  # CNN K=100, 2NN K=3400
    ./.venv/bin/python scripts/client_state_cost.py --cases cnn:100 --dir /tmp/states
    ./.venv/bin/python scripts/client_state_cost.py --algorithm fedper   # the kept head only

``--algorithm``: whose state's shapes: ``scaffold`` and ``ditto`` keep a model-sized state per
client (c_i; v_k), ``fedper`` the arrays of its top ``--personal-layers`` layers, as
``fedlab.algorithms.fedper.FedPer`` chooses them on the built model.

For each model and K it fills a real ``fedlab.core.client_state.ClientStateStore`` the way a run
does: every round m=10 clients (C=0.1 of 100, or 10 of 3,400) get a new model-sized state, and
the round's checkpoint commits them (one flushed file per client) and prunes the superseded ones,
until every client has a state. It prints the bytes of one client's state, the files on disk at
the end, the median and max seconds a round's commit took, and the process's peak memory
(the store holds only the states changed since the last checkpoint in memory).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shapes_of(model: str, algorithm: str = "scaffold", personal_layers: int = 1) -> list:
    """The shapes of one client's state: the model's trainable arrays, or FedPer's head."""
    from fedlab.data.mnist import Mnist
    from fedlab.models import build_model

    keras_model = build_model(model, Mnist.input_shape, Mnist.num_classes)
    shapes = [tuple(w.shape) for w in keras_model.trainable_weights]
    if algorithm != "fedper":
        return shapes
    from fedlab.algorithms.fedper import FedPer, FedPerConfig
    from fedlab.backends.fast.functional import functional_model

    fedper = FedPer(FedPerConfig(name="fedper", personal_layers=personal_layers), None, 0)
    layer_of = functional_model(keras_model).layer_of
    fedper.bind_model(layer_of[: len(shapes)])
    return [s for s, own in zip(shapes, fedper.head, strict=True) if own]


def measure(
    model: str,
    num_clients: int,
    per_round: int,
    directory: Path,
    algorithm: str = "scaffold",
    personal_layers: int = 1,
) -> dict:
    from fedlab.core.client_state import ClientStateStore

    shapes = shapes_of(model, algorithm, personal_layers)
    store = ClientStateStore(directory)
    rng = np.random.default_rng(0)
    commits, order = [], rng.permutation(num_clients)
    for start in range(0, num_clients, per_round):
        ids = order[start : start + per_round]
        states = {int(c): [rng.standard_normal(s).astype(np.float32) for s in shapes] for c in ids}
        store.update(states, round_num=start // per_round + 1)
        tick = time.perf_counter()
        store.commit()
        store.prune()
        commits.append(time.perf_counter() - tick)
    one = sum(int(np.prod(s)) * 4 for s in shapes)
    return {
        "algorithm": algorithm,
        "model": model,
        "K": num_clients,
        "clients_per_round": per_round,
        "state_bytes_per_client": one,
        "disk_bytes": store.nbytes_on_disk(),
        "files": len(store.index),
        "commit_s_median": statistics.median(commits),
        "commit_s_max": max(commits),
        "rounds": len(commits),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", default="cnn:100,2nn:3400", help="model:K,... (cnn:100,2nn:3400)"
    )
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    parser.add_argument(
        "--algorithm",
        default="scaffold",
        choices=("scaffold", "ditto", "fedper"),
        help="whose per-client state (scaffold, ditto: model-sized; fedper: the kept head)",
    )
    parser.add_argument("--personal-layers", type=int, default=1, help="fedper's (1)")
    args = parser.parse_args(argv)
    print(f"CPU: {_cpu()}")
    for case in args.cases.split(","):
        model, k = case.split(":")
        directory = Path(tempfile.mkdtemp(prefix="fedlab-states-", dir=args.dir))
        try:
            r = measure(
                model, int(k), args.per_round, directory, args.algorithm, args.personal_layers
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(
            f"{r['algorithm']}, {r['model']} K={r['K']}: "
            f"{r['state_bytes_per_client'] / 1e6:.4f} MB a client; "
            f"{r['files']} files, {r['disk_bytes'] / 1e9:.3f} GB on disk; a round's commit of "
            f"{r['clients_per_round']} clients: {r['commit_s_median']:.3f} s median, "
            f"{r['commit_s_max']:.3f} s max over {r['rounds']} rounds"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB (TensorFlow imported for the model shapes)")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
