"""No password in a URL reaches a log or MLflow: such URLs are refused in one line, and every
string the MLflow tracker records is redacted (``fedlab/credentials.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fedlab.credentials import redact, url_password
from fedlab.tracking.mlflow import MlflowTracker
from tests.conftest import run_cli

SECRET = "s3cr:et%40pw"  # with the characters a password may hold in a URL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"postgresql://fedlab:{SECRET}@db:5432/optuna", "postgresql://fedlab:***@db:5432/optuna"),
        (f"postgresql+psycopg2://u:{SECRET}@h/d", "postgresql+psycopg2://u:***@h/d"),
        (f"a=http://u:{SECRET}@h:5000 b=x", "a=http://u:***@h:5000 b=x"),
        ("postgresql://fedlab@db:5432/optuna", "postgresql://fedlab@db:5432/optuna"),
        ("sqlite:////tmp/x@y/optuna.db", "sqlite:////tmp/x@y/optuna.db"),
        ("user@example.org", "user@example.org"),
    ],
)
def test_redact_masks_the_password_of_a_url_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_url_password() -> None:
    assert url_password("postgresql://u:pw@h/d") == "pw"
    assert url_password("postgresql://u@h/d") is None
    assert url_password("sqlite:///optuna.db") is None


def test_a_study_storage_with_a_password_is_refused_before_anything_runs(tmp_path: Path) -> None:
    url = f"postgresql://fedlab:{SECRET}@127.0.0.1:1/optuna"
    result = run_cli("-m", "hparams_search=lr", f"hydra.sweeper.storage={url}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fedlab: error: hydra.sweeper.storage=postgresql://fedlab:***@127.0.0.1:1/optuna holds "
        "a password, which would be logged; allowed: the URL without the password, with the "
        "password in PGPASSWORD or a ~/.pgpass file (PGPASSFILE) for PostgreSQL"
    )
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_tracking_uri_with_a_password_is_refused(tmp_path: Path) -> None:
    result = run_cli(f"tracking.uri=http://fedlab:{SECRET}@127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("fedlab: error: tracking.uri=http://fedlab:***@127.0.0.1:1 holds")
    assert "MLFLOW_TRACKING_PASSWORD" in line
    assert SECRET not in result.stdout + result.stderr


def test_the_mlflow_tracker_records_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the store's artifacts go to ./mlruns
    url = f"postgresql://fedlab:{SECRET}@db/optuna"
    tracker = MlflowTracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="x")
    tracker.start(f"run {url}", params={"storage": url, "n": 1}, tags={"overrides": f"s={url}"})
    tracker.set_tags({"later": url})
    config = tmp_path / "config.yaml"
    config.write_text(f"storage: {url}\n")
    tracker.log_artifact(config)
    tracker.finish("FAILED", f"cannot reach {url}")
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(tracker.run_id)
    recorded = [run.info.run_name, *run.data.params.values(), *run.data.tags.values()]
    assert not [value for value in recorded if SECRET in value]
    assert run.data.params["storage"] == "postgresql://fedlab:***@db/optuna"
    uploaded = Path(run.info.artifact_uri.removeprefix("file://")) / "config.yaml"
    assert uploaded.read_text() == "storage: postgresql://fedlab:***@db/optuna\n"
    assert config.read_text() == f"storage: {url}\n"  # the local file is the user's, untouched
    assert SECRET not in tracker.location
