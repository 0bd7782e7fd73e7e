#!/usr/bin/env python
"""What a FEMNIST-sized dataset costs to load: first load (parse), cached load, peak memory.

Usage (from the repository root):

    ./.venv/bin/python scripts/emnist_cost.py                 # 3,400 writers, 749,068 examples
    ./.venv/bin/python scripts/emnist_cost.py --dir /tmp/femnist --keep

It writes a synthetic ``emnist_all.sqlite`` of TFF 0.87's real size (``emnist.load_data``'s
docstring: 3,400 writers, 671,585 training and 77,483 test examples in the splits ``all_train``
and ``all_test``) in exactly TFF's format: the two tables of ``sql_client_data_utils
.save_to_sql_client_data``, one row per example holding a serialized ``tf.train.Example`` with
``label`` (int64) and ``pixels`` (784 float32 values ``k / 255``, random k). The blobs are
TensorFlow's own ``tf.train.Example`` with the pixel bytes put in place (``tests/test_emnist.py``
checks the reader against files written by TFF's own writer; this file would take TFF's writer an
hour).
Writer sizes are drawn from a log-normal, as real writers differ.

Then, each in a fresh process, so that each peak is its own: (1) the first load, which parses
the SQLite file and writes the preprocessed ``.npz``; (2) a cached load; (3) a cached load
followed by ``federate`` with ``partition=natural`` over all 3,400 writers and one round's
``client_data`` for 10 of them (what a run holds before it trains). It prints seconds and peak
resident memory (``ru_maxrss``) of each, and the bytes of the arrays.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# TFF 0.87 simulation/datasets/emnist.py, load_data's docstring (only_digits=False).
WRITERS, TRAIN, TEST = 3_400, 671_585, 77_483


def writer_sizes(total: int, rng: np.random.Generator) -> np.ndarray:
    """``WRITERS`` sizes summing to ``total``, each at least 1."""
    weights = rng.lognormal(0.0, 0.6, WRITERS)
    sizes = 1 + np.floor(weights / weights.sum() * (total - WRITERS)).astype(np.int64)
    sizes[: total - int(sizes.sum())] += 1
    return sizes


def templates() -> tuple[list[bytes], int]:
    """A serialized example per label 0..61 with zero pixels, and where its 3,136 pixel bytes
    start (the same in each: a label below 128 is one varint byte)."""
    import tensorflow as tf

    blobs = []
    for label in range(62):
        example = tf.train.Example()
        example.features.feature["label"].int64_list.value.append(label)
        example.features.feature["pixels"].float_list.value.extend([0.0] * 784)
        blobs.append(example.SerializeToString())
    start = blobs[0].index(b"\x0a\xc0\x18" + bytes(3136)) + 3
    assert all(b.index(b"\x0a\xc0\x18" + bytes(3136)) + 3 == start for b in blobs)
    return blobs, start


def write_sqlite(path: Path, seed: int = 0) -> float:
    """The synthetic file; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    table = (np.arange(256, dtype=np.float32) / np.float32(255)).astype("<f4")
    blobs, start = templates()
    ids = [f"f{w:04d}_{w % 100:02d}" for w in range(WRITERS)]
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
            "serialized_example_proto BLOB NOT NULL)"
        )
        db.execute(
            "CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
            "num_examples INTEGER NOT NULL)"
        )
        for split, total in (("all_train", TRAIN), ("all_test", TEST)):
            sizes = writer_sizes(total, rng)
            for client_id, n in zip(ids, sizes, strict=True):
                pixels = table[rng.integers(0, 256, (n, 784))].tobytes()
                labels = rng.integers(0, 62, n)
                rows = (
                    (
                        split,
                        client_id,
                        blobs[label][:start]
                        + pixels[i * 3136 : (i + 1) * 3136]
                        + blobs[label][start + 3136 :],
                    )
                    for i, label in enumerate(labels)
                )
                db.executemany("INSERT INTO examples VALUES (?, ?, ?)", rows)
                db.execute(
                    "INSERT INTO client_metadata VALUES (?, ?, ?)", (client_id, split, int(n))
                )
        db.commit()
    return time.perf_counter() - started


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
started = time.perf_counter()
from fedlab.data.emnist import EmnistConfig, load_emnist
cfg = EmnistConfig(path={path!r}, cache_dir={cache!r})
data = load_emnist(cfg)
seconds = time.perf_counter() - started
out = dict(
    seconds=seconds, parse_seconds=data.parse_seconds, load_seconds=data.load_seconds,
    writers=len(data.client_ids), train=len(data.y_train), test=len(data.y_test),
    array_bytes=int(data.x_train.nbytes + data.x_test.nbytes + data.y_train.nbytes
                    + data.y_test.nbytes),
    float32_bytes=int(4 * (data.x_train.shape[0] + data.x_test.shape[0]) * 784),
)
if {federate!r}:
    del data
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from fedlab.config import register_configs
    from fedlab.data import federate
    register_configs()
    with initialize_config_dir({conf!r}, version_base="1.3"):
        raw = compose("config", overrides=["dataset=emnist", "dataset.path={path}",
                      "dataset.cache_dir={cache}", "model=emnist_cnn", "partition=natural",
                      "num_clients={writers}", "tracking=none"])
    run = OmegaConf.to_object(raw)
    tick = time.perf_counter()
    fed = federate(run)
    out["federate_seconds"] = time.perf_counter() - tick
    tick = time.perf_counter()
    for client in range(0, {writers}, max({writers} // 10, 1)):
        x, y = fed.client_data(client)
    out["client_data_seconds_10"] = time.perf_counter() - tick
    out["clients"] = fed.num_clients
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(path: Path, cache: Path, federate: bool = False) -> dict:
    code = CHILD.format(
        repo=str(REPO),
        path=str(path),
        cache=str(cache),
        federate=federate,
        conf=str(REPO / "conf"),
        writers=WRITERS,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--scale", type=float, default=1.0, help="a fraction of it (smoke test)")
    args = parser.parse_args()
    global WRITERS, TRAIN, TEST
    WRITERS, TRAIN, TEST = (max(int(n * args.scale), 1) for n in (WRITERS, TRAIN, TEST))
    folder = args.dir or Path(tempfile.mkdtemp(prefix="femnist-"))
    folder.mkdir(parents=True, exist_ok=True)
    path, cache = folder / "emnist_all.sqlite", folder / "cache"
    try:
        if not path.exists():
            seconds = write_sqlite(path)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
        shutil.rmtree(cache, ignore_errors=True)
        results = {
            "first load (parse + write the preprocessed file)": child(path, cache),
            "cached load": child(path, cache),
            f"cached load + federate(natural, {WRITERS}) + 10 clients' data": child(
                path, cache, federate=True
            ),
        }
        npz = sorted(cache.glob("emnist-*.npz"))
        for name, r in results.items():
            print(f"{name}: {json.dumps(r)}")
        print(f"preprocessed file: {npz[0].stat().st_size / 1e6:.0f} MB")
        print(json.dumps(results))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
