"""CIFAR-10 and CIFAR-100 from their standard downloaders' files, read through the real code.

CIFAR-10's batches are written as the real ``cifar-10-batches-py`` files are: a protocol-2
pickle of a dict with bytes keys (``data`` uint8 (n, 3072) channel-major, ``labels`` a list of
ints, ``batch_label``, ``filenames``), and read back by Keras' own ``load_batch`` too. CIFAR-100's
SQLite file is written with TFF's own ``sql_client_data_utils.save_to_sql_client_data`` (and
read by TFF's ``SqlClientData`` and ``cifar100`` parse spec), like tests/test_shakespeare.py.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fedlab.data import DataSourceError, federate
from fedlab.data.cifar import (
    TEST_BATCH,
    TRAIN_BATCHES,
    Cifar10,
    load_cifar10,
    load_cifar100,
    read_batch,
)
from tests.conftest import checked, run_cli, runtime_error

PER_BATCH = 12  # 60 training and 12 test images


def write_cifar10(folder: Path, per_batch: int = PER_BATCH, seed: int = 0) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        batch = {
            b"batch_label": f"{name} of the tiny test set".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)  # the real files' protocol (Python 2's cPickle)
        written[name] = batch
    return written


@pytest.fixture
def cifar10_dir(tmp_path) -> tuple[Path, dict[str, dict]]:
    folder = tmp_path / "cifar-10-batches-py"
    return folder, write_cifar10(folder)


def test_cifar10_reads_as_keras_load_data_does(cifar10_dir) -> None:
    from keras.src.datasets.cifar import load_batch

    folder, written = cifar10_dir
    data = load_cifar10(folder)
    assert data.x_train.shape == (5 * PER_BATCH, 3072) and data.x_test.shape == (PER_BATCH, 3072)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert not data.x_train.flags.writeable
    # Keras' own reader of the same files, turned channels_last as load_data() turns it.
    keras_x = np.concatenate([load_batch(str(folder / n))[0] for n in TRAIN_BATCHES])
    keras_y = np.concatenate([load_batch(str(folder / n))[1] for n in TRAIN_BATCHES])
    want = keras_x.transpose(0, 2, 3, 1).reshape(-1, 3072).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(data.x_train, want)
    np.testing.assert_array_equal(data.y_train, keras_y)
    # One pixel by hand: image 0 of the test batch, row 3, column 5, green.
    raw = written[TEST_BATCH][b"data"][0]
    assert data.x_test[0].reshape(32, 32, 3)[3, 5, 1] == np.float32(
        raw[1024 + 3 * 32 + 5]
    ) / np.float32(255)
    assert load_cifar10(folder) is data  # cached in-process


def test_cifar10_default_location_is_keras_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataSourceError) as err:
        load_cifar10()
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / ".keras/datasets/cifar-10-batches-py") in message
    assert "tf.keras.datasets.cifar10.load_data()" in message
    write_cifar10(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py", per_batch=2)
    assert load_cifar10().x_train.shape == (10, 3072)


@pytest.mark.parametrize(
    ("partition", "keys"),
    [
        ("iid", []),
        ("shards", []),
        ("dirichlet", ["partition.alpha=0.3"]),
        ("labels_per_client", ["partition.classes_per_client=2"]),
        ("quantity_skew", []),
    ],
)
def test_cifar10_partitions_and_centralised_test_set(cifar10_dir, compose_cfg, partition, keys):
    folder, _ = cifar10_dir
    cfg = checked(
        "dataset=cifar10",
        f"dataset.path={folder}",
        "model=cifar_cnn",
        f"partition={partition}",
        *keys,
        "num_clients=5",
    )
    data = federate(cfg)
    assert data.num_clients == 5 and data.test_clients is None
    assert data.input_shape == (32, 32, 3) and data.num_classes == 10
    joined = np.concatenate(data.clients)
    assert len(np.unique(joined)) == len(joined) and joined.max() < 5 * PER_BATCH
    if partition == "labels_per_client":
        assert all(len(np.unique(data.y_train[c])) == 2 for c in data.clients)
    assert np.array_equal(federate(cfg).clients[0], data.clients[0])  # seeded


def test_cifar10_bad_files_are_one_line(cifar10_dir, tmp_path) -> None:
    folder, _ = cifar10_dir

    def refused(path, match: str) -> None:
        with pytest.raises(DataSourceError, match=match) as err:
            load_cifar10(path)
        assert "\n" not in str(err.value)

    # A missing batch.
    partial = tmp_path / "partial"
    write_cifar10(partial, per_batch=2)
    (partial / "data_batch_4").unlink()
    refused(partial, "missing data_batch_4; tf.keras.datasets.cifar10.load_data")
    # Truncated, and not a pickle at all.
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    refused(folder, "data_batch_3: cannot read")
    (folder / "data_batch_3").write_bytes(b"\x00garbage" * 100)
    refused(folder, "data_batch_3: cannot read")
    # CIFAR-100's python pickle under a CIFAR-10 name.
    other = tmp_path / "other"
    write_cifar10(other, per_batch=2)
    with open(other / "data_batch_1", "wb") as fh:
        data = np.zeros((2, 3072), np.uint8)
        pickle.dump({b"data": data, b"fine_labels": [1, 2], b"coarse_labels": [0, 0]}, fh, 2)
    refused(other, "is a CIFAR-100 pickle")
    # MNIST's npz named as the path, and a pickle of something else (no code is run).
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=np.zeros((1, 28, 28), np.uint8))
    refused(npz, "is a file; cifar10 reads the cifar-10-batches-py folder")
    with open(other / "data_batch_1", "wb") as fh:
        pickle.dump({b"x_train": [1]}, fh, 2)
    refused(other, "has keys \\['x_train'\\], not CIFAR-10's data and labels")
    with open(other / "data_batch_1", "wb") as fh:
        pickle.dump(Path("/"), fh, 2)  # an object the unpickler must not rebuild
    refused(other, "refusing to load pathlib")
    assert read_batch(folder / "data_batch_1")[0].shape == (PER_BATCH, 3072)


# -- CIFAR-100 -----------------------------------------------------------------------------------


def write_cifar100(path: Path, clients: dict[str, dict[str, int]], seed: int = 0) -> dict:
    """TFF's writer, one file per split merged into one (TFF's real file holds both splits,
    with ids "0".. in each). ``clients[split][client_id]`` is the client's number of images."""
    import tensorflow as tf
    from tensorflow_federated.python.simulation.datasets import sql_client_data_utils

    rng = np.random.default_rng(seed)
    made = {split: {} for split in clients}
    parts = []
    for split, sizes in clients.items():
        for cid, n in sizes.items():
            label = rng.integers(0, 100, n)
            made[split][cid] = {
                "coarse_label": (label // 5).astype(np.int64),
                "image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
                "label": label.astype(np.int64),
            }
        part = path.with_name(f"{path.stem}-{split}.sqlite")
        sql_client_data_utils.save_to_sql_client_data(
            list(sizes),
            lambda cid, split=split: tf.data.Dataset.from_tensor_slices(made[split][cid]),
            str(part),
            split_names_by_client_id=dict.fromkeys(sizes, split),
        )
        parts.append(part)
    with sqlite3.connect(path) as db:
        db.execute(f"ATTACH '{parts[0]}' AS a")
        db.execute("CREATE TABLE examples AS SELECT * FROM a.examples")
        db.execute("CREATE TABLE client_metadata AS SELECT * FROM a.client_metadata")
        db.commit()
        db.execute("DETACH a")
        for part in parts[1:]:
            db.execute(f"ATTACH '{part}' AS b")
            db.execute("INSERT INTO examples SELECT * FROM b.examples")
            db.execute("INSERT INTO client_metadata SELECT * FROM b.client_metadata")
            db.commit()
            db.execute("DETACH b")
    return made


TRAIN_SIZES = {"0": 3, "1": 4, "2": 2, "10": 5}  # "10" after "2": ids in numeric order
TEST_SIZES = {"0": 2, "1": 3}


@pytest.fixture(scope="module")
def cifar100_file(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("tff") / "cifar100.sqlite"
    made = write_cifar100(path, {"train": TRAIN_SIZES, "test": TEST_SIZES})
    return path, made


def test_cifar100_reads_tffs_sqlite(cifar100_file, tmp_path) -> None:
    from tensorflow_federated.python.simulation.datasets import cifar100, sql_client_data

    path, made = cifar100_file
    first = load_cifar100(str(path), str(tmp_path))
    second = load_cifar100(str(path), str(tmp_path))
    assert first.parse_seconds > 0 and second.parse_seconds == 0  # read from the cache
    assert len(list(tmp_path.glob("cifar100-*.npz"))) == 1
    assert first.client_ids == ("0", "1", "2", "10") and first.test_client_ids == ("0", "1")
    assert first.separate_test_clients
    for arrays in (first, second):
        assert arrays.x_train.shape == (14, 3072) and arrays.x_test.shape == (5, 3072)
        assert [len(c) for c in arrays.train_clients] == [3, 4, 2, 5]
        assert [len(c) for c in arrays.test_clients] == [2, 3]
    # TFF's own reading of the file (its cifar100 parse spec) gives the same images and labels.
    tff_train = sql_client_data.SqlClientData(str(path), "train").preprocess(
        cifar100._add_proto_parsing
    )
    for i, cid in enumerate(first.client_ids):
        (batch,) = tff_train.create_tf_dataset_for_client(cid).batch(100)
        idx = first.train_clients[i]
        want = batch["image"].numpy().reshape(-1, 3072).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(first.x_train[idx], want)
        np.testing.assert_array_equal(second.x_train[idx], want)
        np.testing.assert_array_equal(first.y_train[idx], batch["label"].numpy())
        np.testing.assert_array_equal(made["train"][cid]["label"], batch["label"].numpy())
    np.testing.assert_array_equal(
        first.x_test[first.test_clients[1]],
        made["test"]["1"]["image"].reshape(-1, 3072).astype(np.float32) / np.float32(255),
    )


def test_cifar100_natural_partition_evaluates_tffs_test_clients(
    cifar100_file, compose_cfg, tmp_path
) -> None:
    path, _ = cifar100_file
    cfg = checked(
        "dataset=cifar100",
        f"dataset.path={path}",
        f"dataset.cache_dir={tmp_path}",
        "model=cifar_cnn",
        "partition=natural",
        "num_clients=2",
    )
    data = federate(cfg)
    full = load_cifar100(str(path), str(tmp_path))
    assert data.num_clients == 2 and data.num_classes == 100
    chosen = [
        next(i for i, c in enumerate(full.train_clients) if c[0] == d[0]) for d in data.clients
    ]
    assert chosen == sorted(chosen)
    # Whichever training clients were chosen, all of TFF's test clients are evaluated.
    assert [list(c) for c in data.test_clients] == [list(c) for c in full.test_clients]
    assert federate(cfg).clients[0][0] == data.clients[0][0]  # seeded


def test_cifar100_bad_files_are_one_line(tmp_path) -> None:
    from tests.test_shakespeare import _write_tff_sqlite

    def refused(path, match: str) -> None:
        with pytest.raises(DataSourceError, match=match) as err:
            load_cifar100(str(path), str(tmp_path / "cache"))
        assert "\n" not in str(err.value)

    refused(tmp_path / "nope.sqlite", "tff.simulation.datasets.cifar100.load_data\\(\\) downloads")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 500)
    refused(corrupt, "cannot read")
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE other (a)")
    refused(foreign, "not TFF client data")
    (tmp_path / "tff").mkdir()
    shakespeare = tmp_path / "tff" / "shakespeare.sqlite"
    _write_tff_sqlite(shakespeare, {"A_ROLE": (["a line"], ["another"])})
    refused(shakespeare, "features \\['snippets'\\], not CIFAR-100's")
    # A truncated record: one example's bytes cut short.
    good = tmp_path / "good.sqlite"
    write_cifar100(good, {"train": {"0": 2}, "test": {"0": 1}})
    with sqlite3.connect(good) as db:
        (rowid, blob) = db.execute(
            "SELECT rowid, serialized_example_proto FROM examples"
        ).fetchone()
        db.execute(
            "UPDATE examples SET serialized_example_proto = ? WHERE rowid = ?",
            (blob[: len(blob) // 2], rowid),
        )
        db.commit()
    refused(good, "a corrupt example of client '0'")


# -- the config: natural on CIFAR-10, the 2NN on CIFAR images, the presets ---------------------


def test_natural_partition_on_cifar10_and_the_2nn_on_images(compose_cfg) -> None:
    from fedlab.errors import ConfigError
    from fedlab.models import build_model

    with pytest.raises(ConfigError) as err:
        checked("dataset=cifar10", "partition=natural")
    message = str(err.value)
    assert (
        "partition=natural needs a dataset with clients of its own; dataset=cifar10 has none"
        in message
    )
    allowed = re.search(r"allowed: dataset=([\w|]+), or a synthetic partition", message)
    assert {"cifar100", "shakespeare"} <= set(allowed.group(1).split("|"))
    assert "cifar10" not in allowed.group(1).split("|")
    # The 2NN flattens its input: on CIFAR's 3,072 values it has 3072*200+200 + 200*200+200 +
    # 200*10+10 = 656,810 parameters and runs (tests/test_cifar_cnn.py runs a round of it).
    checked("dataset=cifar10", "model=2nn")
    model = build_model("2nn", Cifar10.input_shape, Cifar10.num_classes)
    assert model.count_params() == 656_810
    assert model(np.zeros((2, 3072), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match="model=cifar_cnn needs images of at least 24x24"):
        build_model("cifar_cnn", (80,), 90)


@pytest.mark.parametrize(
    "preset", ["cifar_fedavg", "cifar_fedsgd", "reddi_cifar10", "reddi_cifar100"]
)
def test_cifar_presets_compose(preset: str, compose_cfg) -> None:
    from fedlab.models import MODELS

    text = (Path(__file__).parents[1] / "conf" / "experiment" / f"{preset}.yaml").read_text()
    if "resnet18_gn" in text and "resnet18_gn" not in MODELS:
        pytest.skip("model=resnet18_gn comes from issue 14's ResNet branch")
    cfg = checked(f"experiment={preset}")
    assert cfg.dataset.name in ("cifar10", "cifar100")
    if preset.startswith("cifar_"):
        assert (cfg.num_clients, cfg.C, cfg.model.name) == (100, 0.1, "cifar_cnn")
        assert cfg.target_accuracy == 0.80
    else:
        assert (cfg.num_clients, cfg.clients_per_round, cfg.E, cfg.B) == (500, 10, 1, 20)
        assert cfg.rounds == 4000


def test_the_cli_refuses_missing_cifar_data_in_one_line(tmp_path) -> None:
    result = run_cli(
        "dataset=cifar10",
        f"dataset.path={tmp_path / 'nowhere'}",
        "model=cifar_cnn",
        "rounds=1",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    line = runtime_error(result.stderr)
    assert line.startswith("fedlab: error: no CIFAR-10 data"), line
    assert "tf.keras.datasets.cifar10.load_data()" in line
    assert "Traceback" not in result.stderr
