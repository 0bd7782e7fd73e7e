"""Paper numbers live once, in ``fedlab/paper.py``: every ``# paper:`` line of every preset agrees
with it, the presets set the rates they quote, the Reddi grids list their method presets, and the
report's "paper" column shows the paper's value for MNIST, Shakespeare, CIFAR and Reddi et al.'s
runs (on a tiny table of real configs' params)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from fedlab import paper
from fedlab.config import run_params
from fedlab.report import RunSeries, group
from fedlab.report.tables import HEADER, markdown_table, rows, write_csv
from tests.conftest import CONF, checked

PRESET_FILES = sorted((CONF / "experiment").glob("*.yaml"))
PRESETS = [p.stem for p in PRESET_FILES]
# Presets that reproduce a paper's table or figure: each quotes its numbers.
QUOTING = ("table", "figure", "cifar_", "reddi_", "server_optimizers")


def test_quotes_have_sources_and_parse_back() -> None:
    assert len(paper.QUOTES) > 90
    for key, quote in paper.QUOTES.items():
        assert re.fullmatch(r"[a-z0-9_.]+", key), key
        assert quote.source and quote.values, key
        # What a preset writes after "=" reads back as the quote itself.
        values, log10, alternatives = paper.parse_values(quote.text())
        assert (log10, alternatives) == (quote.log10, quote.alternatives), key
        assert len(values) == len(quote.values), key


@pytest.mark.parametrize("path", PRESET_FILES, ids=PRESETS)
def test_every_quote_in_a_preset_agrees_with_paper_py(path: Path) -> None:
    text = path.read_text()
    quotes = paper.preset_quotes(text)
    problems = [f"{path.name}:{q.line}: {q.problem()}" for q in quotes if q.problem()]
    assert not problems, "\n".join(problems)
    if path.stem.startswith(QUOTING):
        assert quotes, f"{path.name} reproduces a paper but quotes none of its numbers"


def test_a_wrong_or_malformed_quote_is_named() -> None:
    text = "\n".join(
        [
            "# paper: mcmahan2017.table1.2nn.iid.b10 = 316 87 77 75 70",  # right
            "# paper: mcmahan2017.table1.2nn.iid.b10 = 316 86 77 75 70",  # a wrong cell
            "# paper: reddi2021.cifar100.fedavg.accuracy = 34.8",  # issue 24's item 1
            "# paper: reddi2021.cifar100.fedadam.client_lr = 0.0316",  # not as the source prints
            "# paper: mcmahan2017.table3.fedsgd = 3,750 6,600 —",  # thousands separators
            "# paper: mcmahan2017.table9.cnn = 1",  # no such table
            "# paper: reddi2021.cifar10.fedadagrad.accuracy = 73.1",  # unresolved: both, or none
            "# paper mcmahan2017.target.cnn = 99",  # not the format: not a quote line
            "#paper: no equals sign",
        ]
    )
    found = {q.line: q.problem() for q in paper.preset_quotes(text)}
    assert sorted(found) == [1, 2, 3, 4, 5, 6, 7, 9]
    assert found[1] is None
    assert found[2] == (
        "mcmahan2017.table1.2nn.iid.b10 = 316 86 77 75 70, but fedlab/paper.py has 316 87 77 75 70"
    )
    assert found[3].endswith("but fedlab/paper.py has 44.7")
    assert found[4].endswith("but fedlab/paper.py has 10^-1.5")
    assert "'3,750' is not a value" in found[5]
    assert found[6].startswith("unknown key 'mcmahan2017.table9.cnn'")
    assert found[7].endswith("but fedlab/paper.py has 72.1 or 73.1")
    assert found[9].startswith("unknown key '#paper: no equals sign'")


def _typed(compose_cfg, *overrides: str):
    return checked(*overrides)


def _get(cfg, dotted: str) -> float:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


METHOD_OF = {name: method for method, name in paper.SERVER_OPTIMIZER.items()}
RATE = re.compile(
    r"^(?:reddi2021|flower\.afo)\.(?P<dataset>\w+)\.(?P<method>\w+)\."
    r"(?P<name>client_lr|server_lr|epsilon)$"
)
RATE_KEY = {
    "client_lr": "client_optimizer.lr",
    "server_lr": "server_optimizer.lr",
    "epsilon": "server_optimizer.epsilon",
}
SETTING = {  # quote key -> the config value that must equal it
    "reddi2021.{dataset}.clients_per_round": "clients_per_round",
    "reddi2021.{dataset}.batch": "B",
    "reddi2021.{dataset}.rounds": "rounds",
    "mcmahan2017.figure3.lstm_lr": "client_optimizer.lr",
    "mcmahan2017.cifar.clients": "num_clients",
}
MODEL_OF_TARGET = {"2nn": "2nn", "cnn": "cnn", "char_lstm": "lstm"}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_set_the_rates_and_settings_they_quote(preset: str, compose_cfg) -> None:
    """A preset that quotes its own method's rate (or a setting of its task) runs with it; the
    other quotes (other methods' rates in reddi_emnist's table) are information only."""
    cfg = _typed(compose_cfg, f"experiment={preset}")
    dataset = cfg.dataset.name
    method = METHOD_OF.get(cfg.server_optimizer.name)
    checked = {}
    for quote in paper.preset_quotes((CONF / "experiment" / f"{preset}.yaml").read_text()):
        key = quote.key
        rate = RATE.match(key)
        if rate and rate["dataset"] == dataset and rate["method"] == method:
            checked[RATE_KEY[rate["name"]]] = key
        for pattern, setting in SETTING.items():
            if key == pattern.format(dataset=dataset):
                checked[setting] = key
        if key == f"mcmahan2017.figure4.lr_decay.{preset.removeprefix('cifar_')}":
            checked["client_optimizer.lr_decay"] = key  # cifar_fedavg's and cifar_fedsgd's own
        if key == "reddi2021.fedavgm.momentum" and method == "fedavgm":
            checked["server_optimizer.momentum"] = key
        if key == "reddi2021.beta_2" and method in ("fedadam", "fedyogi"):
            assert cfg.server_optimizer.beta_2 in paper.QUOTES[key].values
        target = MODEL_OF_TARGET.get(cfg.model.name)
        if key == f"mcmahan2017.target.{target}":
            assert math.isclose(cfg.target_accuracy * 100, paper.QUOTES[key].values[0])
    for setting, key in checked.items():
        assert math.isclose(_get(cfg, setting), paper.value(key), rel_tol=1e-6), (setting, key)
    if preset.startswith("reddi_"):  # each quotes its method's rates: not vacuous for them
        assert {"client_optimizer.lr", "server_optimizer.lr"} & set(checked), preset


@pytest.mark.parametrize(("base", "count"), [("reddi_cifar10", 5), ("reddi_cifar100", 6)])
def test_a_reddi_grid_runs_every_method_preset_once(base: str, count: int, compose_cfg) -> None:
    """The grid command in the base preset's comments selects the base (FedAvg with server lr 1)
    and its method presets, each a different method (the basic sweeper cannot pair a method's
    client and server rates, so each row is a preset)."""
    text = (CONF / "experiment" / f"{base}.yaml").read_text()
    (command,) = [line for line in text.splitlines() if "-m 'experiment=glob(" in line]
    override = re.search(r"'(experiment=glob\(.*?\))'", command)[1]
    sweep = OverridesParser.create().parse_override(override).value()
    chosen = sorted(sweep.filter(PRESETS))
    assert chosen == sorted([base] + [p for p in PRESETS if p.startswith(f"{base}_")])
    assert len(chosen) == count
    methods = set()
    for preset in chosen:
        cfg = _typed(compose_cfg, f"experiment={preset}")
        lr = cfg.server_optimizer.lr
        methods.add((cfg.server_optimizer.name, round(math.log10(lr), 6)))
        assert (cfg.dataset.name, cfg.clients_per_round, cfg.E, cfg.B, cfg.rounds) == (
            base.removeprefix("reddi_"),
            10,
            1,
            20,
            4000,
        )
    assert len(methods) == count


# -- the report's "paper" column -------------------------------------------------------------


def _params(compose_cfg, *overrides: str) -> dict[str, str]:
    cfg = _typed(compose_cfg, *overrides)
    flat = run_params(cfg)
    return {k: "null" if v is None else str(v) for k, v in flat.items()}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # McMahan et al. 2017, Table 2's Shakespeare rows (non-IID: a client per role).
        (["experiment=table2_shakespeare", "partition=natural", "B=10"], ["164 (Table 2)"]),
        (["experiment=table2_shakespeare", "partition=iid", "B=null"], ["2488 (Table 2)"]),
        (["experiment=table2_shakespeare", "E=5", "B=10"], ["41 (Table 2)"]),
        # Table 3 (CIFAR-10): one column per target; FedSGD never reached 85%.
        (["experiment=cifar_fedavg"], ["280 (Table 3)"]),
        (["experiment=cifar_fedavg", "target_accuracy=0.85"], ["2000 (Table 3)"]),
        (["experiment=cifar_fedsgd", "target_accuracy=0.82"], ["6600 (Table 3)"]),
        (["experiment=cifar_fedsgd", "target_accuracy=0.85"], ["not reached (Table 3)"]),
        # Reddi et al. 2021: the method's accuracy, whichever rates the run used.
        (["experiment=reddi_cifar100"], ["44.7% (Reddi et al. 2021, FedAvg)"]),
        (["experiment=reddi_cifar100_fedavg"], ["44.7% (Reddi et al. 2021, FedAvg)"]),
        (["experiment=reddi_cifar100_fedadam"], ["52.5% (Reddi et al. 2021, FedAdam)"]),
        (["experiment=reddi_cifar10_fedyogi"], ["78% (Reddi et al. 2021, FedYogi)"]),
        (
            ["experiment=reddi_cifar10_fedadagrad"],
            ["72.1% or 73.1%, unresolved (Reddi et al. 2021, FedAdagrad)"],
        ),
        # MNIST, as before.
        (["experiment=table1_2nn", "partition=iid"], ["87 (Table 1)"]),
        # Not the papers' settings: no value.
        (["experiment=table2_shakespeare", "C=0.2"], []),
        (["experiment=table2_shakespeare", "server_optimizer.lr=0.5"], []),
        (["experiment=table2_shakespeare", "E=2"], []),
        (["experiment=cifar_fedavg", "num_clients=50"], []),
        (["experiment=cifar_fedavg", "target_accuracy=0.9"], []),
        (["experiment=cifar_fedavg", "partition=dirichlet"], []),
        (["experiment=reddi_cifar100_fedadam", "B=10"], []),
        (["experiment=reddi_cifar10", "partition.alpha=0.5"], []),
        (["experiment=reddi_cifar10_fedavgm", "server_optimizer.momentum=0.5"], []),
        (["experiment=reddi_cifar100", "model=cifar_cnn"], []),
    ],
)
def test_the_papers_value_for_a_runs_params(overrides, expected, compose_cfg) -> None:
    assert [str(v) for v in paper.lookup(_params(compose_cfg, *overrides))] == expected


def test_the_report_shows_the_papers_value_on_a_tiny_table(compose_cfg, tmp_path: Path) -> None:
    configs = {
        "shakespeare": ["experiment=table2_shakespeare", "partition=natural", "B=10"],
        "cifar": ["experiment=cifar_fedavg"],
        "reddi": ["experiment=reddi_cifar100_fedadam"],
        "unresolved": ["experiment=reddi_cifar10_fedadagrad"],
        "other": ["experiment=cifar_fedavg", "C=0.2"],
    }
    runs = []
    for name, overrides in configs.items():
        params = _params(compose_cfg, *overrides, "seed=0")
        runs.append(RunSeries(name, name, params, {0: 0.1, 5: 0.5}, {5: 2.0}, None))
    table = group(runs)
    assert [len(c.runs) for c in table] == [1] * len(configs)
    paper_column = [row[HEADER.index("paper")] for row in rows(table)]
    assert paper_column == [
        "164 (Table 2)",
        "280 (Table 3)",
        "52.5% (Reddi et al. 2021, FedAdam)",
        "72.1% or 73.1%, unresolved (Reddi et al. 2021, FedAdagrad)",
        "n/a",
    ]
    assert "| 280 (Table 3) |" in markdown_table(table)
    with write_csv(table, tmp_path / "summary.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [(r["paper_rounds_to_target"], r["paper_accuracy"]) for r in written] == [
        ("164", ""),
        ("280", ""),
        ("", "52.5"),
        ("", "72.1 or 73.1"),
        ("", ""),
    ]
    assert written[2]["paper_source"] == "Reddi_et_al._2021,_FedAdam"
