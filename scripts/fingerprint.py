#!/usr/bin/env python
"""A refactor changes no numbers: the SHA-256 of a run's final server state, for a few configs.

Usage (from the repository root):

    ./.venv/bin/python scripts/fingerprint.py              # the default set, printed
    ./.venv/bin/python scripts/fingerprint.py --json fp.json
    ./.venv/bin/python scripts/fingerprint.py model=2nn rounds=2   # one config of your own

Each config runs through the real command line (``python -m fedlab``) in a fresh temporary
directory, with checkpoints on and tracking off; the digest covers every array of the last
checkpoint (global weights, optimizer and algorithm state, in order, dtype and shape included)
and every per-client state file beside it. Run it before and after a change, on one machine:
equal digests mean the same numbers bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# The configs the open-framework refactor (issue 19) must leave bit for bit unchanged.
DEFAULT = {
    "notebook_cnn": ["experiment=notebook", "rounds=2"],
    "scaffold_topk": [
        "model=2nn",
        "algorithm=scaffold",
        "compression=topk",
        "compression.error_feedback=true",
        "rounds=3",
    ],
    "dp_fedavg": ["model=2nn", "privacy=dp_fedavg", "client_optimizer=sgd", "rounds=3"],
}
COMMON = ["tracking=none", "checkpoint_every=1"]


def _digest_arrays(h: hashlib._Hash, arrays: list[np.ndarray]) -> None:
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())


def fingerprint(overrides: list[str]) -> dict[str, str]:
    """Run ``python -m fedlab OVERRIDES`` in a temporary directory; digest its last state."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        out = subprocess.run(
            [sys.executable, "-m", "fedlab", *overrides, *COMMON],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"fedlab {' '.join(overrides)} failed:\n{out.stderr[-3000:]}")
        (path,) = sorted((cwd / "checkpoints").glob("run-*.npz"))
        with np.load(path) as npz:
            meta = json.loads(str(npz["meta"]))
            state = [npz[f"state_{i:04d}"] for i in range(meta["num_arrays"])]
        h = hashlib.sha256()
        _digest_arrays(h, state)
        clients = hashlib.sha256()
        for file in sorted(path.with_name(path.stem + ".clients").glob("*.npz")):
            with np.load(file) as npz:
                clients.update(file.name.encode())
                _digest_arrays(clients, [npz[k] for k in sorted(npz.files)])
        return {
            "round": str(meta["round"]),
            "state_sha256": h.hexdigest(),
            "client_states_sha256": clients.hexdigest(),
            "history": json.dumps(meta["history"]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="one config of your own (default: the set)")
    parser.add_argument("--json", type=Path, help="also write the digests here")
    args = parser.parse_args()
    configs = {"custom": args.overrides} if args.overrides else DEFAULT
    found = {}
    for name, overrides in configs.items():
        found[name] = fingerprint(overrides)
        print(f"{name}: {' '.join(overrides)}")
        for key, value in found[name].items():
            print(f"  {key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
