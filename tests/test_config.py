"""Config: every option of every group composes; defaults reproduce the notebook; bad values are
rejected with one line naming the value and what is allowed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from fedlab.config import RunConfig
from fedlab.errors import ConfigError
from tests.conftest import CONF, assert_refused, checked, run_cli

# The groups that fill a node of RunConfig with one option; experiment/ and hparams_search/
# presets are global (tests/test_sweeps.py covers them), and callbacks/ holds several options at
# once (test_the_callbacks_group_lists_every_registered_callback).
GROUPS = sorted(
    p.name
    for p in CONF.iterdir()
    if p.is_dir()
    and any(p.glob("*.yaml"))
    and p.name not in ("experiment", "hparams_search", "callbacks")
)
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def test_groups_are_the_documented_ones() -> None:
    assert set(GROUPS) >= {
        "dataset",
        "partition",
        "model",
        "client_optimizer",
        "server_optimizer",
        "hardware",
        "tracking",
    }
    options = {g: {o for gg, o in OPTIONS if gg == g} for g in GROUPS}
    assert options["partition"] == {
        "iid",
        "shards",
        "dirichlet",
        "quantity_skew",
        "labels_per_client",
        "natural",
    }
    assert options["dataset"] >= {"mnist", "shakespeare"}
    assert options["model"] == {
        "cnn",
        "2nn",
        "logreg",
        "char_lstm",
        "cifar_cnn",
        "emnist_cnn",
        "resnet18_gn",
    }
    for role in ("client_optimizer", "server_optimizer"):
        assert options[role] == {"sgd", "sgdm", "adam", "yogi", "adagrad"}
    assert options["hardware"] == {"cpu", "gpu"}
    assert options["tracking"] == {"mlflow", "none", "server"}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_to_a_typed_config(compose_cfg, group: str, option: str) -> None:
    # An option that needs another dataset than MNIST (natural clients) is composed with one.
    needs = {("partition", "natural"): ["dataset=shakespeare", "model=char_lstm"]}
    needs[("dataset", "shakespeare")] = ["model=char_lstm"]
    needs[("model", "char_lstm")] = ["dataset=shakespeare"]  # the only dataset it fits
    cfg = checked(f"{group}={option}", *needs.get((group, option), []))
    assert isinstance(cfg, RunConfig)
    chosen = getattr(cfg, group)
    field = {"hardware": "device", "tracking": "backend"}.get(group, "name")
    # tracking=server is MLflow with a server's URI.
    expected = {("tracking", "server"): "mlflow"}.get((group, option), option)
    assert str(getattr(chosen, field)) == expected


def test_experiment_null_means_no_preset() -> None:
    assert checked("experiment=null") == checked()
    assert checked("hparams_search=null") == checked()


def test_help_shows_only_the_chosen_options_keys(tmp_path: Path) -> None:
    result = run_cli("--help", "partition=iid", "client_optimizer=adam", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    config = result.stdout.split("== Config ==", 1)[1]
    partition = re.split(r"\n\S", config.split("partition:", 1)[1], maxsplit=1)[0]
    assert "name: iid" in partition and "alpha" not in partition
    client = config.split("client_optimizer:", 1)[1].split("server_optimizer:", 1)[0]
    assert "beta_2" in client and "momentum" not in client and "initial_accumulator" not in client


def test_the_callbacks_group_lists_every_registered_callback() -> None:
    """Every registered callback runs by default, or is added by the presets it belongs to
    (pruning: an Optuna search's, conf/hparams_search/)."""
    from fedlab.callbacks import CALLBACKS

    cfg = checked()
    searches = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))
    added = {n for s in searches for n in checked(f"hparams_search={s}").callbacks} - set(
        cfg.callbacks
    )
    assert added == {"pruning"}
    assert set(cfg.callbacks) | added == set(CALLBACKS.names())
    for name, chosen in cfg.callbacks.items():
        assert chosen.name == name and chosen._target_ is None
    assert "progress" not in checked("~callbacks.progress").callbacks
    with pytest.raises(ConfigError, match="callbacks.evaluation is required"):
        checked("~callbacks.evaluation")


def test_defaults_reproduce_the_notebook(compose_cfg) -> None:
    cfg: RunConfig = checked()
    assert cfg.dataset.name == "mnist"
    assert cfg.model.name == "cnn"
    assert (cfg.C, cfg.B, cfg.E, cfg.num_clients, cfg.rounds) == (0.1, 10, 1, 100, 1000)
    assert cfg.client_optimizer.name == "adam" and cfg.client_optimizer.lr == 2e-4
    assert cfg.server_optimizer.name == "adam" and cfg.server_optimizer.lr == 1e-3
    assert cfg.target_accuracy == 0.99
    assert cfg.clients_per_round == 10


@pytest.mark.parametrize(
    ("C", "K", "m"), [(0.1, 100, 10), (0.0, 100, 1), (1.0, 100, 100), (0.2, 100, 20), (0.05, 10, 1)]
)
def test_clients_per_round_is_max_of_CK_and_1(compose_cfg, C: float, K: int, m: int) -> None:
    cfg = checked(f"C={C}", f"num_clients={K}")
    assert cfg.clients_per_round == m


def test_full_batch_is_null(compose_cfg) -> None:
    cfg = checked("B=null", "E=1")
    assert cfg.B is None


# (override, words the one-line message must contain)
BAD_VALUES = [
    (["C=1.5"], ["C=1.5", "0 <= C <= 1"]),
    (["C=-0.1"], ["C=-0.1", "0 <= C <= 1"]),
    (["B=0"], ["B=0", ">= 1"]),
    (["E=0"], ["E=0", ">= 1"]),
    (["rounds=0"], ["rounds=0", ">= 1"]),
    (["num_clients=0"], ["num_clients=0", ">= 1"]),
    (["eval_every=0"], ["eval_every=0", ">= 1"]),
    (["seed=-1"], ["seed=-1", ">= 0"]),
    (["target_accuracy=0"], ["target_accuracy=0", "0 < target_accuracy <= 1"]),
    (["target_accuracy=1.5"], ["target_accuracy=1.5", "0 < target_accuracy <= 1"]),
    (["client_optimizer.lr=0"], ["client_optimizer.lr=0", "> 0"]),
    (["server_optimizer.lr=-1"], ["server_optimizer.lr=-1", "> 0"]),
    (["server_optimizer=sgdm", "server_optimizer.momentum=1.0"], ["momentum=1.0", "[0, 1)"]),
    (["partition=dirichlet", "partition.alpha=0"], ["partition.alpha=0", "> 0"]),
    (["partition=shards", "partition.shards_per_client=0"], ["shards_per_client=0", ">= 1"]),
    (["tracking.uri=foo://bar"], ["foo://bar", "sqlite://"]),
    (["tracking.experiment= "], ["tracking.experiment", "non-empty"]),
    # Local work that cannot be held in memory (it once hung at the first round).
    (["E=1000000000000"], ["E=1000000000000", "GB", "allowed here: 1 <= E <= "]),
    (["E=1000000000000", "C=0", "num_clients=1"], ["E=1000000000000", "1 client x E epochs"]),
    # Cross-field rules (STYLE.md: clients per round <= clients, shards fit the data).
    (["num_clients=70000"], ["num_clients=70000", "at most 60000"]),
    (
        ["partition=shards", "num_clients=200", "partition.shard_size=300"],
        ["num_clients=200", "num_clients * shards_per_client * shard_size <= 60000"],
    ),
    (["client_sampling=cyclic", "C=0.3"], ["cyclic", "multiple", "(30 "]),
    # A key the chosen option ignores is an error, not a silently logged no-op.
    (["partition=iid", "partition.alpha=0.1"], ["partition.alpha=0.1", "partition=dirichlet"]),
    (["partition=dirichlet", "partition.assignment=fixed"], ["assignment", "partition=shards"]),
    (
        ["client_optimizer=adam", "client_optimizer.momentum=0.5"],
        ["client_optimizer.momentum=0.5", "client_optimizer=sgdm"],
    ),
    (["server_optimizer=sgd", "server_optimizer.beta_1=0.8"], ["beta_1", "adam|yogi"]),
    # A key added with + that the chosen option does not have: the same one line as without +
    # (these once ran the defaults without a word).
    (
        ["+client_optimizer.learning_rate=0.1"],
        ["client_optimizer.learning_rate", "client_optimizer=adam has the keys", "lr"],
    ),
    (
        ["partition=dirichlet", "+partition.alhpa=0.1"],
        ["partition.alhpa", "did you mean 'partition.alpha'"],
    ),
    (["+partition.alpha=0.1"], ["partition.alpha=0.1", "partition=dirichlet"]),
    # A seed NumPy and TensorFlow cannot take (once a NumPy traceback at the first round).
    (["seed=99999999999999999999999"], ["seed=99999999999999999999999", "<= 4294967295"]),
]


@pytest.mark.parametrize(
    ("overrides", "words"), BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES]
)
def test_out_of_range_values_fail_on_conversion(compose_cfg, overrides, words) -> None:
    assert_refused(overrides, words)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "words"), BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES]
)
def test_every_bad_value_through_the_cli(tmp_path: Path, overrides, words) -> None:
    result = run_cli(*overrides, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedlab: error: "), result.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # no run was started, so none is left RUNNING


def test_E_up_to_the_limit_composes_and_one_more_is_refused(compose_cfg) -> None:
    """The limit in the message is the real one on this machine, for the 2NN at C=0.1 and at
    one client a round."""
    import re

    for overrides in (["model=2nn"], ["model=2nn", "C=0"]):
        with pytest.raises(ConfigError) as info:
            checked(*overrides, "E=1000000000000")
        limit = int(re.search(r"allowed here: 1 <= E <= (\d+)$", str(info.value)).group(1))
        assert limit >= 1000  # a large E that fits (the paper's largest is 20) is left to run
        epochs = checked(*overrides, f"E={limit}").E
        assert epochs == limit
        with pytest.raises(ConfigError, match=f"E={limit + 1} is invalid"):
            checked(*overrides, f"E={limit + 1}")


def test_cli_refuses_local_work_that_cannot_fit_at_once(tmp_path: Path) -> None:
    """``E=1000000000000 model=2nn rounds=1`` printed nothing for over a minute."""
    started = time.monotonic()
    result = run_cli("E=1000000000000", "model=2nn", "rounds=1", cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedlab: error: E=1000000000000 is invalid")
    assert "allowed here: 1 <= E <= " in lines[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_wrong_type_fails_at_compose_time(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("C=abc")
    assert isinstance(info.value.__cause__, ValidationError)


# Through the real CLI: one line on stderr, exit status 2, no traceback, nothing run.
CLI_BAD = [
    (["C=1.5"], "C=1.5 is invalid; allowed: 0 <= C <= 1"),
    (["C=abc"], "C='abc' is invalid; allowed: a number"),
    (["B=inf"], "B='inf' is invalid; allowed: an integer, or null"),
    (["Cc=0.1"], "unknown config key 'Cc'; did you mean 'C'?"),
    (
        ["partition=foo"],
        "partition=foo is not an option; allowed: dirichlet, iid, labels_per_client, natural, "
        "quantity_skew, shards",
    ),
    (
        ["model=resnet"],
        "model=resnet is not an option; allowed: 2nn, char_lstm, cifar_cnn, cnn, emnist_cnn, "
        "logreg",
    ),
    # issue 14's bad input
    (
        ["partition=natural"],
        "partition=natural needs a dataset with clients of its own; dataset=mnist has none",
    ),
    (
        ["dataset=shakespeare", "model=char_lstm", "partition=shards"],
        "partition=shards sorts examples by their class, and dataset=shakespeare's examples have "
        "no single class",
    ),
    (
        ["dataset=shakespeare", "model=char_lstm", "partition=labels_per_client"],
        "partition=labels_per_client sorts examples by their class",
    ),
    (
        ["partition=quantity_skew", "partition.exponent=0"],
        "partition.exponent=0.0 is invalid; allowed: a finite number > 0",
    ),
    (
        ["partition=labels_per_client", "partition.classes_per_client=11"],
        "partition.classes_per_client=11 is invalid for dataset=mnist; allowed: 1..10",
    ),
    (
        ["dataset=shakespeare", "model=char_lstm", "partition=natural", "num_clients=5000"],
        "num_clients=5000 is invalid with partition=natural; allowed: at most 1214",
    ),
    (
        ["dataset=shakespeare", "model=cnn", "partition=natural"],
        "model=cnn does not fit dataset=shakespeare (sequences of 80 ids, a class at every "
        "position); allowed with it: model=char_lstm",
    ),
    (
        ["model=char_lstm"],
        "model=char_lstm does not fit dataset=mnist (28x28x1 examples of one class); allowed "
        "with it: model=cnn|2nn|logreg|",
    ),
    (["model.widht=3"], "unknown config key 'model.widht'"),
    (["client_sampling=random"], "Invalid value 'random', expected one of [uniform, cyclic]"),
    (["tracking.uri=foo://x"], "tracking.uri='foo://x' has an unknown scheme"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_cli_rejects_bad_input_in_one_line(tmp_path: Path, args, expected) -> None:
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"fedlab: error: {lines[0].removeprefix('fedlab: error: ')}"], result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


def _groups_without_a_default_option() -> list[str]:
    """The groups of conf/config.yaml's defaults list that choose nothing by default (``group:
    null``) or are marked ``optional``: the preset groups, now and any added later. Hydra drops
    an unknown option of an ``optional`` group without a word."""
    found = []
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))["defaults"]:
        if not isinstance(entry, dict):
            continue
        ((key, option),) = entry.items()
        words = key.split()
        if option is None or words[0] == "optional":
            found.append(words[-1].split("@")[0].lstrip("/"))
    return found


PRESET_GROUPS = _groups_without_a_default_option()


def test_the_preset_groups_are_found_in_the_defaults_list() -> None:
    assert {"experiment", "hparams_search"} <= set(PRESET_GROUPS)


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
@pytest.mark.parametrize("group", PRESET_GROUPS)
def test_an_unknown_preset_is_refused_like_any_unknown_option(
    tmp_path: Path, group: str, multirun: bool
) -> None:
    """``experiment=tabel2_cnn`` once ran the default 1000-round CNN without a word."""
    args = ["-m"] if multirun else []
    result = run_cli(*args, f"{group}=nope", "rounds=1", cwd=tmp_path, timeout=120)
    allowed = ", ".join(sorted(p.stem for p in (CONF / group).glob("*.yaml")))
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert result.stderr.strip().splitlines() == [
        f"fedlab: error: {group}=nope is not an option; allowed: {allowed}"
    ], result.stderr[-2000:]
    assert result.stdout == ""
    assert not (tmp_path / "mlflow.db").exists()  # no run, no sweep's parent run
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_cli_full_error_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("C=1.5", cwd=tmp_path, timeout=120, HYDRA_FULL_ERROR="1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_cli_help_lists_groups_and_options(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    section = result.stdout.split("== Config groups")[1].split("== Config ==")[0]
    listed = {
        line.split(":")[0]: {o.strip() for o in line.split(":")[1].split(",")}
        for line in section.strip().splitlines()[1:]
    }
    expected = {g: {o for gg, o in OPTIONS if gg == g} for g in GROUPS}
    for preset_group in ("experiment", "hparams_search", "callbacks"):
        expected[preset_group] = {p.stem for p in (CONF / preset_group).glob("*.yaml")}
    assert listed == expected


def test_cli_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    result = run_cli("--cfg", "job", "partition=shards", "C=0.2", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.partition.name == "shards" and printed.C == 0.2
    assert printed.model.name == "cnn"


# Bad input found only when the run starts: still one line (after the lines the run logged of
# what it was doing), exit 2, and no run left RUNNING.
RUNTIME_BAD = [
    (["tracking.uri=http://127.0.0.1:9"], "tracking.uri=http://127.0.0.1:9 is unreachable"),
    (["hydra.run.dir=/etc/hostname/out"], "cannot use /etc/hostname/out: Not a directory"),
    (["checkpoint_dir=/etc/hostname/ck"], "cannot use /etc/hostname/ck"),
    (
        ["dataset.source=keras", "dataset.path=/nonexistent/mnist.npz"],
        "no MNIST data: tried Keras file /nonexistent/mnist.npz (missing)",
    ),
    # hardware=gpu: see test_hardware_gpu_runs_or_is_refused_as_the_machine_has_a_gpu.
]


@pytest.mark.parametrize(
    ("args", "expected"), RUNTIME_BAD, ids=[" ".join(a) for a, _ in RUNTIME_BAD]
)
def test_cli_rejects_bad_runtime_input_in_one_line(tmp_path: Path, args, expected) -> None:
    import sqlite3

    result = run_cli(*args, "model=logreg", "rounds=1", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    *said, last = result.stderr.strip().splitlines()
    assert last.startswith("fedlab: error: ") and expected in last, result.stderr[-2000:]
    # Before it, only what the run said it was doing (fedlab/logs.py): no traceback.
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in said), result.stderr[-2000:]
    db = tmp_path / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            statuses = [s for (s,) in conn.execute("select status from runs")]
        assert "RUNNING" not in statuses


def _tensorflow_sees_a_gpu() -> bool:
    """Whether TensorFlow finds a GPU in a fresh process, with the environment the CLI gets."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1]) > 0


def test_hardware_gpu_runs_or_is_refused_as_the_machine_has_a_gpu(tmp_path: Path) -> None:
    """On a machine without a GPU, hardware=gpu is refused in one line before a run starts; on
    one with a GPU, it runs."""
    import sqlite3

    result = run_cli("hardware=gpu", "model=logreg", "rounds=1", cwd=tmp_path, timeout=300)
    if _tensorflow_sees_a_gpu():
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.startswith("After 1 rounds: final test accuracy "), result.stdout
        return
    assert result.returncode == 2, result.stderr[-2000:]
    *said, last = result.stderr.strip().splitlines()
    assert last == (
        "fedlab: error: hardware=gpu, but TensorFlow sees no GPU on this machine; "
        "allowed here: hardware=cpu"
    ), result.stderr[-2000:]
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in said), result.stderr[-2000:]
    db = tmp_path / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert "RUNNING" not in [s for (s,) in conn.execute("select status from runs")]
