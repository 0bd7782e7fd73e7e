"""The plug-in registries (``fedlab.plugin.Registry``): order, duplicates, errors, and the
discovery that makes an option one new module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fedlab.plugin import Registry
from tests.conftest import REPO


def _three() -> Registry[str]:
    registry: Registry[str] = Registry("thing", None)
    for name in ("beta", "alpha", "gamma"):
        registry.register(name)(f"entry {name}")
    return registry


def test_names_keep_the_registration_order() -> None:
    registry = _three()
    assert registry.names() == ["beta", "alpha", "gamma"]
    assert list(registry) == ["beta", "alpha", "gamma"]
    assert registry.items() == [
        ("beta", "entry beta"),
        ("alpha", "entry alpha"),
        ("gamma", "entry gamma"),
    ]
    assert registry.get("alpha") == "entry alpha"
    assert "alpha" in registry and "delta" not in registry


def test_register_returns_the_entry_and_accepts_it_twice() -> None:
    registry: Registry[type] = Registry("thing", None)

    @registry.register("one")
    class One:
        pass

    assert registry.get("one") is One
    assert registry.register("one")(One) is One  # a module imported twice registers again
    assert registry.names() == ["one"]


def test_a_name_taken_by_another_entry_is_refused() -> None:
    registry = _three()
    with pytest.raises(ValueError, match=r"^thing 'alpha' is registered twice$"):
        registry.register("alpha")("another entry")
    assert registry.get("alpha") == "entry alpha"


def test_an_unknown_name_lists_the_allowed_ones() -> None:
    with pytest.raises(KeyError) as err:
        _three().get("delta")
    assert err.value.args == ("thing='delta' is unknown; allowed: beta, alpha, gamma",)


def test_discovery_imports_every_public_module_of_the_package(tmp_path, monkeypatch) -> None:
    package = tmp_path / "fedlab_test_plugins"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from fedlab.plugin import Registry\n"
        "PLUGINS = Registry('plugin', __name__)\n"
        "PLUGINS.register('builtin')('builtin')\n"
    )
    for module, name in [("zeta", "z"), ("alpha", "a"), ("_private", "p"), ("mid", "m")]:
        (package / f"{module}.py").write_text(
            f"from fedlab_test_plugins import PLUGINS\nPLUGINS.register({name!r})({module!r})\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in [m for m in sys.modules if m.startswith("fedlab_test_plugins")]:
        monkeypatch.delitem(sys.modules, module)
    import fedlab_test_plugins

    assert "fedlab_test_plugins.alpha" not in sys.modules  # nothing until a name is asked for
    assert "a" in fedlab_test_plugins.PLUGINS
    # The package's own first, then its modules in file-name order; "_" modules are private.
    assert fedlab_test_plugins.PLUGINS.names() == ["builtin", "a", "m", "z"]
    assert "fedlab_test_plugins._private" not in sys.modules
    for module in [m for m in sys.modules if m.startswith("fedlab_test_plugins")]:
        monkeypatch.delitem(sys.modules, module)


# In a fresh interpreter: which modules of each package were loaded before and after the names
# were asked for, and whether TensorFlow was loaded (validation asks the registries before it).
_REAL_REGISTRIES = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    from fedlab.aggregators import AGGREGATORS
    from fedlab.algorithms import ALGORITHMS
    from fedlab.data import DATASETS
    from fedlab.models import MODELS
    from fedlab.optimizers import OPTIMIZERS
    found = {}
    for registry in (ALGORITHMS, AGGREGATORS, OPTIMIZERS, MODELS, DATASETS):
        package = importlib.import_module(registry.package)
        modules = [
            f"{registry.package}.{info.name}"
            for info in pkgutil.iter_modules(package.__path__)
            if not info.name.startswith("_")
        ]
        before = [m for m in modules if m in sys.modules]
        names = registry.names()
        found[registry.kind] = {
            "names": names,
            "modules": modules,
            "before": before,
            "after": [m for m in modules if m in sys.modules],
        }
    found["tensorflow"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_federated")
    )
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def real_registries() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _REAL_REGISTRIES],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("algorithm", ["fedavg"]),
        ("aggregator", ["mean"]),
        ("optimizer", ["sgd", "sgdm", "adam", "yogi", "adagrad"]),
        ("dataset", ["mnist"]),
    ],
)
def test_the_real_registries_find_their_modules(real_registries, kind, expected) -> None:
    found = real_registries[kind]
    assert set(expected) <= set(found["names"]), found["names"]
    assert found["after"] == found["modules"]  # every module of the package was imported


def test_the_models_come_in_the_papers_order(real_registries) -> None:
    assert real_registries["model"]["names"][:3] == ["cnn", "2nn", "logreg"]
    assert real_registries["model"]["after"] == real_registries["model"]["modules"]


def test_a_plug_in_needs_no_import_anywhere_else(real_registries) -> None:
    # FedAvg and the optimizers are found only by discovery: their packages' __init__ does not
    # import them, so nothing lists them by hand.
    assert "fedlab.algorithms.fedavg" not in real_registries["algorithm"]["before"]
    assert "fedlab.optimizers.yogi" not in real_registries["optimizer"]["before"]


def test_asking_the_registries_does_not_load_tensorflow(real_registries) -> None:
    assert real_registries["tensorflow"] == []
