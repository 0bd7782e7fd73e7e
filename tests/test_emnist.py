"""FEMNIST / EMNIST from TFF's SQLite file, and Reddi et al. 2020's EMNIST CNN.

The files are written by TFF's own ``sql_client_data_utils.save_to_sql_client_data`` with the
features TFF's ``emnist.load_data`` parses (``pixels`` 28x28 float32, ``label`` int64) and its
split names, so the reading code tested is the one that reads the real file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fedlab.data import DataSourceError
from fedlab.data.coded import UNIT_BYTE_TABLE, CodedExamples, NotCodable, encode
from fedlab.data.emnist import Emnist, EmnistConfig, load_emnist

# Three writers: all three in the 62-class splits; the digits-only splits hold two of them.
WRITERS = ("f0000_14", "f0001_41", "f0002_05")
SIZES = {"all_train": (3, 4, 2), "all_test": (1, 2, 1)}
DIGIT_WRITERS = ("f0000_14", "f0002_05")
DIGIT_SIZES = {"digits_only_train": (2, 3), "digits_only_test": (1, 1)}


def _writers(seed: int = 0, odd_value: float | None = None):
    """split -> {writer: (pixels (n, 28, 28) float32 of k/255, labels (n,) int64)}."""
    rng = np.random.default_rng(seed)
    made = {}
    for names, sizes, classes in ((WRITERS, SIZES, 62), (DIGIT_WRITERS, DIGIT_SIZES, 10)):
        for split, counts in sizes.items():
            made[split] = {}
            first = 0
            for writer, n in zip(names, counts, strict=True):
                # LEAF's values: 8-bit grey levels / 255 in float64, stored as float32.
                pixels = (rng.integers(0, 256, (n, 28, 28)) / 255.0).astype(np.float32)
                labels = (first + np.arange(n, dtype=np.int64)) % classes  # classes 0, 1, ...
                first += n
                made[split][writer] = (pixels, labels)
    if odd_value is not None:
        made["all_train"][WRITERS[1]][0][0, 3, 4] = odd_value
    return made


def write_tff_emnist(path: Path, splits: dict) -> Path:
    """TFF's writer stores one split per client id, so each split is written to its own file
    and the files merged into one (TFF's real file holds every split under the same ids)."""
    import tensorflow as tf
    from tensorflow_federated.python.simulation.datasets import sql_client_data_utils

    parts = []
    for split, clients in splits.items():
        part = path.with_name(f"{path.stem}-{split}.sqlite")

        def dataset_fn(client_id, clients=clients):
            pixels, labels = clients[client_id]
            return tf.data.Dataset.from_tensor_slices({"label": labels, "pixels": pixels})

        sql_client_data_utils.save_to_sql_client_data(
            list(clients),
            dataset_fn,
            str(part),
            allow_overwrite=True,
            split_names_by_client_id=dict.fromkeys(clients, split),
        )
        parts.append(part)
    with sqlite3.connect(path) as db:
        for i, part in enumerate(parts):
            db.execute(f"ATTACH '{part}' AS p")
            if i == 0:
                db.execute("CREATE TABLE examples AS SELECT * FROM p.examples")
                db.execute("CREATE TABLE client_metadata AS SELECT * FROM p.client_metadata")
            else:
                db.execute("INSERT INTO examples SELECT * FROM p.examples")
                db.execute("INSERT INTO client_metadata SELECT * FROM p.client_metadata")
            db.commit()
            db.execute("DETACH p")
    return path


@pytest.fixture(scope="module")
def tff_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emnist")
    good = write_tff_emnist(folder / "emnist_all.sqlite", _writers())
    odd = write_tff_emnist(folder / "odd.sqlite", _writers(odd_value=0.3))
    return good, odd


def test_coded_examples_are_the_float32_values_exactly() -> None:
    values = UNIT_BYTE_TABLE[np.arange(256)].reshape(2, 128)
    codes = encode(values)
    assert codes.dtype == np.uint8 and np.array_equal(codes.ravel(), np.arange(256))
    coded = CodedExamples(codes)
    assert coded.shape == (2, 128) and coded.dtype == np.float32 and len(coded) == 2
    assert coded.nbytes == 256 + 1024  # the codes and the table
    np.testing.assert_array_equal(coded[[1]], values[[1]])
    np.testing.assert_array_equal(np.asarray(coded), values)
    assert coded[0].dtype == np.float32 and not coded[0].flags.writeable
    # 0.3 is no k/255; -0.0 would decode as +0.0; the next float after 1/255 is not 1/255.
    for bad in (0.3, -0.0, np.nextafter(UNIT_BYTE_TABLE[1], np.float32(1))):
        with pytest.raises(NotCodable):
            encode(np.array([[0.0, bad]], np.float32))


def test_tffs_sqlite_reads_as_writers_with_the_exact_pixels(tff_files, tmp_path) -> None:
    from tensorflow_federated.python.simulation.datasets import sql_client_data

    good, _ = tff_files
    # TFF itself reads the file as its EMNIST: the same clients.
    assert sql_client_data.SqlClientData(str(good), "all_train").client_ids == list(WRITERS)
    written = _writers()
    for only_digits, names, (train_split, test_split) in (
        (False, WRITERS, ("all_train", "all_test")),
        (True, DIGIT_WRITERS, ("digits_only_train", "digits_only_test")),
    ):
        cfg = EmnistConfig(only_digits=only_digits, path=str(good), cache_dir=str(tmp_path))
        first = load_emnist(cfg)
        second = load_emnist(cfg)
        assert first.parse_seconds > 0 and second.parse_seconds == 0  # the preprocessed file
        assert "preprocessed" in second.source
        assert first.client_ids == second.client_ids == names
        for data in (first, second):
            assert isinstance(data.x_train, CodedExamples) and data.x_train.shape[1] == 784
            assert data.x_train.codes.nbytes * 4 == np.asarray(data.x_train).nbytes
            for i, writer in enumerate(names):
                for x, y, clients, split in (
                    (data.x_train, data.y_train, data.train_clients, train_split),
                    (data.x_test, data.y_test, data.test_clients, test_split),
                ):
                    pixels, labels = written[split][writer]
                    got = x[clients[i]]
                    assert got.dtype == np.float32
                    # bit for bit: the coded form loses nothing
                    assert np.array_equal(
                        got.view(np.uint32), pixels.reshape(-1, 784).view(np.uint32)
                    )
                    np.testing.assert_array_equal(y[clients[i]], labels)
                    assert y.dtype == np.int32
    assert len(list(tmp_path.glob("emnist-*.npz"))) == 2  # one per variant


def test_pixels_that_are_not_k_over_255_are_kept_as_float32(tff_files, tmp_path) -> None:
    _, odd = tff_files
    data = load_emnist(EmnistConfig(path=str(odd), cache_dir=str(tmp_path)))
    assert isinstance(data.x_train, np.ndarray) and data.x_train.dtype == np.float32
    assert "kept as float32" in data.source
    pixels = _writers(odd_value=0.3)["all_train"][WRITERS[1]][0].reshape(-1, 784)
    np.testing.assert_array_equal(data.x_train[data.train_clients[1]], pixels)
    assert isinstance(data.x_test, CodedExamples)  # the test split is all k/255


def test_examples_stored_out_of_client_order_are_grouped(tff_files, tmp_path) -> None:
    good, _ = tff_files
    shuffled = tmp_path / "shuffled.sqlite"
    with sqlite3.connect(shuffled) as db:
        db.execute(f"ATTACH '{good}' AS g")
        db.execute("CREATE TABLE client_metadata AS SELECT * FROM g.client_metadata")
        # Rows in the order of their bytes: the writers' examples interleaved.
        db.execute("CREATE TABLE examples AS SELECT * FROM g.examples ORDER BY 3")
    a = load_emnist(EmnistConfig(path=str(good), cache_dir=str(tmp_path)))
    b = load_emnist(EmnistConfig(path=str(shuffled), cache_dir=str(tmp_path)))
    for i in range(len(WRITERS)):
        rows_a, rows_b = (sorted(map(bytes, d.x_train.codes[d.train_clients[i]])) for d in (a, b))
        assert rows_a == rows_b


def test_missing_corrupt_and_foreign_files_are_one_line(tff_files, tmp_path) -> None:
    good, _ = tff_files
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(DataSourceError) as err:
        load_emnist(EmnistConfig(path=str(missing), cache_dir=str(tmp_path)))
    assert f"tried {missing} (missing)" in str(err.value)
    assert "tff.simulation.datasets.emnist.load_data(only_digits=False)" in str(err.value)
    assert ".tff/emnist_all.sqlite" in str(err.value)
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 500)
    for bad in (truncated, corrupt):
        with pytest.raises(DataSourceError, match="cannot read|damaged|corrupt") as err:
            load_emnist(EmnistConfig(path=str(bad), cache_dir=str(tmp_path)))
        assert "\n" not in str(err.value) and str(bad) in str(err.value)
    # Another dataset's TFF file: Shakespeare's splits and features.
    foreign = tmp_path / "shakespeare.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE examples (split_name, client_id, serialized_example_proto)")
        db.execute("CREATE TABLE client_metadata (client_id, split_name, num_examples)")
        db.execute("INSERT INTO client_metadata VALUES ('KING_LEAR_KENT', 'train', 1)")
        db.execute("INSERT INTO client_metadata VALUES ('KING_LEAR_KENT', 'test', 1)")
    with pytest.raises(DataSourceError, match="no clients in split 'all_train' \\(its splits: "):
        load_emnist(EmnistConfig(path=str(foreign), cache_dir=str(tmp_path)))
    with sqlite3.connect(foreign) as db:  # right split names, Shakespeare's feature
        from fedlab.data.example_proto import example_class

        example = example_class()()
        example.features.feature["snippets"].bytes_list.value.append(b"Is not this your son?")
        db.execute("UPDATE client_metadata SET split_name = 'all_' || split_name")
        for split in ("all_train", "all_test"):
            db.execute(
                "INSERT INTO examples VALUES (?, 'KING_LEAR_KENT', ?)",
                (split, example.SerializeToString()),
            )
    with pytest.raises(DataSourceError, match="features \\['snippets'\\], not 'pixels'"):
        load_emnist(EmnistConfig(path=str(foreign), cache_dir=str(tmp_path)))


def _cfg(compose_cfg, file: Path, cache: Path, *overrides: str):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(
        compose_cfg(
            "dataset=emnist",
            f"dataset.path={file}",
            f"dataset.cache_dir={cache}",
            "model=emnist_cnn",
            *overrides,
        )
    )


def test_natural_and_synthetic_partitions_of_the_writers(tff_files, tmp_path, compose_cfg) -> None:
    from fedlab.config import ConfigError
    from fedlab.data import PartitionError, federate

    good, _ = tff_files
    full = load_emnist(EmnistConfig(path=str(good), cache_dir=str(tmp_path)))
    cfg = _cfg(compose_cfg, good, tmp_path, "partition=natural", "num_clients=2")
    data = federate(cfg)
    assert data.num_clients == 2 and len(data.test_clients) == 2 and data.num_classes == 62
    assert data.input_shape == (28, 28, 1)
    chosen = [
        next(i for i, c in enumerate(full.train_clients) if c[0] == d[0]) for d in data.clients
    ]
    assert chosen == sorted(chosen)
    for i, train, test in zip(chosen, data.clients, data.test_clients, strict=True):
        np.testing.assert_array_equal(train, full.train_clients[i])
        np.testing.assert_array_equal(test, full.test_clients[i])
    x, y = data.client_data(0)
    assert x.dtype == np.float32 and x.shape == (len(data.clients[0]), 784)
    np.testing.assert_array_equal(x, np.asarray(full.x_train)[data.clients[0]])
    digits = federate(
        _cfg(
            compose_cfg,
            good,
            tmp_path,
            "partition=natural",
            "num_clients=2",
            "dataset.only_digits=true",
        )
    )
    assert digits.num_classes == 10 and max(int(digits.y_train.max()), 0) < 10
    # Labels partitions work on its example labels; the test splits stay every writer's.
    for overrides in (
        ("partition=dirichlet", "num_clients=3"),
        ("partition=labels_per_client", "partition.classes_per_client=1", "num_clients=2"),
        ("partition=shards", "num_clients=2", "partition.shards_per_client=2"),
        ("partition=iid", "num_clients=3"),
    ):
        split = federate(_cfg(compose_cfg, good, tmp_path, *overrides))
        assert len(split.test_clients) == len(WRITERS), overrides
        assert sum(len(c) for c in split.clients) <= sum(SIZES["all_train"])
    # More writers than the file has: one line when it loads; more than TFF's 3,400: at once.
    with pytest.raises(PartitionError, match="num_clients=4 must be <= the dataset's 3 clients"):
        federate(_cfg(compose_cfg, good, tmp_path, "partition=natural", "num_clients=4"))
    with pytest.raises(ConfigError, match="allowed: at most 3400 \\(emnist's own clients\\)"):
        _cfg(compose_cfg, good, tmp_path, "partition=natural", "num_clients=3401")
    with pytest.raises(ConfigError, match="allowed: at most 3383"):
        _cfg(
            compose_cfg,
            good,
            tmp_path,
            "partition=natural",
            "num_clients=3384",
            "dataset.only_digits=true",
        )
    with pytest.raises(
        ConfigError, match="classes_per_client=11 is invalid for dataset=emnist; allowed: 1..10"
    ):
        _cfg(
            compose_cfg,
            good,
            tmp_path,
            "partition=labels_per_client",
            "partition.classes_per_client=11",
            "dataset.only_digits=true",
        )


def test_emnist_spec_states_tffs_figures() -> None:
    assert Emnist.num_natural_clients(EmnistConfig()) == 3400
    assert Emnist.num_natural_clients(EmnistConfig(only_digits=True)) == 3383
    assert Emnist.num_classes_of(EmnistConfig()) == 62
    assert Emnist.train_examples_of(EmnistConfig(only_digits=True)) == 341_873


@pytest.mark.slow  # two CLI starts, ~25 s each on the shared 2-core machine
def test_the_cli_refuses_a_missing_file_and_too_many_writers_in_one_line(
    tff_files, tmp_path
) -> None:
    from tests.conftest import run_cli

    good, _ = tff_files
    base = ("dataset=emnist", "model=emnist_cnn", "rounds=1", f"dataset.cache_dir={tmp_path}")
    for args, expected in (
        (("dataset.path=/nonexistent/emnist_all.sqlite",), "no EMNIST SQLite: tried /nonexistent"),
        (
            (f"dataset.path={good}", "partition=natural", "num_clients=5"),
            "num_clients=5 must be <= the dataset's 3 clients",
        ),
    ):
        result = run_cli(*base, *args, cwd=tmp_path, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fedlab: error: "), result.stderr[-2000:]
        assert expected in lines[0]
