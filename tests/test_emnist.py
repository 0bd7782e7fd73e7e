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
from tests.conftest import checked, runtime_error

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
        import tensorflow as tf

        example = tf.train.Example()
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

    return checked(
        "dataset=emnist",
        f"dataset.path={file}",
        f"dataset.cache_dir={cache}",
        "model=emnist_cnn",
        *overrides,
    )


def test_natural_and_synthetic_partitions_of_the_writers(tff_files, tmp_path, compose_cfg) -> None:
    from fedlab.data import PartitionError, federate
    from fedlab.errors import ConfigError

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
        assert expected in runtime_error(result.stderr)


# -- Reddi et al. 2020's EMNIST CNN, and the fast engine's dropout -------------------------------


def test_the_emnist_cnn_is_reddis_and_tffs(compose_cfg) -> None:
    import tensorflow as tf

    from fedlab.models import build_model

    model = build_model("emnist_cnn", (28, 28, 1), 62)
    # 320 + 18,496 + 1,179,776 + 129 * 62 (TFF's create_conv_dropout_model, 62 classes).
    assert model.count_params() == 1_206_590
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Reshape", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout",
        "Dense",
    ]  # fmt: skip
    rates = [layer.rate for layer in model.layers if isinstance(layer, tf.keras.layers.Dropout)]
    assert rates == [0.25, 0.5]
    off = build_model("emnist_cnn", (28, 28, 1), 62, dropout=False)
    assert [layer.rate for layer in off.layers if "dropout" in layer.name] == [0.0, 0.0]
    assert model(np.zeros((2, 784), np.float32)).shape == (2, 62)
    with pytest.raises(ValueError, match="model=emnist_cnn needs images"):
        build_model("emnist_cnn", (80,), 90)
    cfg = checked("model=emnist_cnn", "model.dropout=false")
    assert cfg.model.dropout is False
    from fedlab.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match="model.dropout=True has no effect with model=cnn; it applies to model=emnist_cnn",
    ):
        checked("model=cnn", "+model.dropout=true")


def test_the_fast_dropout_keeps_one_minus_rate_scaled_and_is_the_identity_at_eval() -> None:
    import tensorflow as tf

    from fedlab.backends.fast.functional import functional_model

    n, rate = 40_000, 0.3
    layers = tf.keras.layers
    one = functional_model(
        tf.keras.Sequential([layers.Input(shape=(n,)), layers.Dropout(rate)], name="one")
    )
    two = functional_model(
        tf.keras.Sequential(
            [layers.Input(shape=(n,)), layers.Dropout(0.5), layers.Dropout(0.5)], name="two"
        )
    )
    x = tf.ones((1, n))
    seed = tf.constant([7, 11], tf.int64)
    out = one.forward([], x, seed).numpy()
    kept = out != 0
    # Binomial(40,000, 0.7): standard deviation 0.0023 of the fraction; 5 of them allowed.
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(one.forward([], x).numpy(), x.numpy())  # no seed: inference
    np.testing.assert_array_equal(one.forward([], x, seed).numpy(), out)  # same seed, same units
    other = one.forward([], x, tf.constant([7, 12], tf.int64)).numpy() != 0
    assert 0.5 < (other == kept).mean() < 0.7  # another seed: independent units (0.58 expected)
    # Two layers draw independent units: 1/4 kept, not the 1/2 of one mask used twice.
    both = two.forward([], x, seed).numpy()
    assert abs((both != 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(both[both != 0], 4.0)


def test_the_fast_emnist_cnn_equals_keras_at_inference() -> None:
    import tensorflow as tf

    from fedlab.backends.fast.functional import functional_model
    from fedlab.models import build_model

    model = build_model("emnist_cnn", (28, 28, 1), 62)
    fast = functional_model(model)
    x = tf.constant(np.random.default_rng(0).random((3, 784), np.float32))
    weights = [tf.constant(w) for w in model.get_weights()]
    np.testing.assert_allclose(
        fast.forward(weights, x).numpy(), model(x, training=False).numpy(), atol=1e-5
    )
    trained = fast.forward(weights, x, tf.constant([1, 2], tf.int64)).numpy()
    assert np.abs(trained - model(x, training=False).numpy()).max() > 1e-3  # dropout acts


def _dropout_engine(seed: int):
    """A tiny model with the CNN's dropout, on the fast engine, seeded as a run seeds it."""
    import tensorflow as tf

    from fedlab.backends.fast import FastEngine
    from fedlab.optimizers import optimizer_config
    from tests.engines import parts

    sgd = optimizer_config("sgd", lr=0.5)
    p = parts("logreg", sgd, optimizer_config("sgd", lr=1.0))
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [layers.Input(shape=(784,)), layers.Dense(16, activation="relu"), layers.Dropout(0.5)]
        + [layers.Dense(10)],
        name="tiny_dropout",
    )
    engine = FastEngine(
        model, p.client_optimizer, p.server_optimizer, p.algorithm, p.aggregator, seed=seed
    )
    return engine, model.get_weights()


def _round_clients(round_num: int):
    from fedlab.core.types import ClientWork

    rng = np.random.default_rng(round_num)
    work = []
    for client_id, n in ((3, 9), (8, 6)):
        x = rng.random((n, 784), np.float32)
        y = rng.integers(0, 10, n).astype(np.int32)
        work.append(ClientWork(x, y, np.arange(n)[None], 4, client_id, None, round_num))
    return work


def test_fast_dropout_rounds_are_bit_identical_for_a_seed_and_across_a_resume() -> None:
    a, initial = _dropout_engine(seed=0)
    b, _ = _dropout_engine(seed=0)
    c, _ = _dropout_engine(seed=1)
    state_a = a.next(a.initialize(initial), _round_clients(1)).state
    state_b = b.next(b.initialize(initial), _round_clients(1)).state
    state_c = c.next(c.initialize(initial), _round_clients(1)).state
    for x, y in zip(a.state_arrays(state_a), b.state_arrays(state_b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(a.state_arrays(state_a), c.state_arrays(state_c), strict=True)
    )
    # Round 2 from round 1's saved state, on a fresh engine (a resumed run), equals going on.
    going_on = a.next(state_a, _round_clients(2)).state
    fresh, _ = _dropout_engine(seed=0)
    resumed = fresh.next(fresh.state_from_arrays(a.state_arrays(state_a)), _round_clients(2))
    for x, y in zip(a.state_arrays(going_on), fresh.state_arrays(resumed.state), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_a_round_of_the_emnist_cnn_without_dropout_equals_tffs() -> None:
    """TFF's Keras dropout draws from its own generator, so the engines are compared with the
    rates at 0 (model.dropout=false): the same convolutions, pooling and dense layers."""
    from fedlab.backends.tff import LocalWorker
    from fedlab.models import build_model
    from fedlab.optimizers import optimizer_config
    from tests.engines import make_fast, make_tff
    from tests.test_fast import _assert_same_metrics, _assert_same_state, _clients

    sgd = optimizer_config("sgd", lr=0.05)
    server = optimizer_config("sgd", lr=1.0)
    off = {"model_options": {"dropout": False}}
    with LocalWorker():
        tff_engine = make_tff("emnist_cnn", sgd, server, **off)
        fast = make_fast("emnist_cnn", sgd, server, parallel_clients=1, **off)
        rng = np.random.default_rng(3)
        initial = [
            (rng.standard_normal(w.shape) * 0.05).astype(np.float32)
            for w in build_model("emnist_cnn", (28, 28, 1), 10).get_weights()
        ]
        clients = _clients((7, 13), 1, 5, seed=1)
        tff_out = tff_engine.next(tff_engine.initialize(initial), clients)
        fast_out = fast.next(fast.initialize(initial), clients)
    tff_arrays = tff_engine.state_arrays(tff_out.state)
    _assert_same_state(fast.state_arrays(fast_out.state), tff_arrays, len(initial), server)
    _assert_same_metrics(fast_out, tff_out)
    assert max(np.abs(a - b).max() for a, b in zip(tff_arrays, initial, strict=False)) > 1e-5


def test_the_reddi_emnist_preset_is_the_papers_setting(compose_cfg) -> None:

    cfg = checked("experiment=reddi_emnist")
    assert (cfg.dataset.name, cfg.dataset.only_digits, cfg.partition.name) == (
        "emnist",
        False,
        "natural",
    )
    assert cfg.model.name == "emnist_cnn" and cfg.model.dropout is True
    assert (cfg.num_clients, cfg.clients_per_round, cfg.E, cfg.B, cfg.rounds) == (
        3400,
        10,
        1,
        20,
        1500,
    )
    assert cfg.client_optimizer.name == "sgd"
    assert np.isclose(np.log10(cfg.client_optimizer.lr), -1.5)
    assert cfg.server_optimizer.name == "adam"
    assert np.isclose(np.log10(cfg.server_optimizer.lr), -2.5)
    assert cfg.server_optimizer.epsilon == 1e-4


@pytest.mark.slow
def test_the_reddi_emnist_preset_runs_a_round_on_a_small_file(tff_files, tmp_path) -> None:
    from tests.conftest import only_run, run_cli

    good, _ = tff_files
    result = run_cli(
        "experiment=reddi_emnist",
        "rounds=1",
        "num_clients=3",
        f"dataset.path={good}",
        f"dataset.cache_dir={tmp_path}",
        "tracking.log_model=false",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "eval/client_accuracy_mean")
    assert [m.step for m in history] == [0, 1]  # round 0 and the last round
