"""Passwords stay out of configs, logs and MLflow.

A PostgreSQL storage for Optuna (``hydra.sweeper.storage``) or an MLflow store
(``tracking.uri``) is named by a URL, and a URL can carry ``user:password@``. fedlab refuses such
a URL (``refuse_password``) before anything is logged: Hydra's Optuna sweeper prints its storage,
and the URL would land in MLflow as a param or tag. The password goes where the client libraries
already look for it:

- PostgreSQL (psycopg2 through libpq): ``PGPASSWORD``, or a ``~/.pgpass`` file (``PGPASSFILE``);
  with ``PGHOST``/``PGPORT``/``PGUSER`` too, ``postgresql:///optuna`` is a complete URL;
- an MLflow server behind HTTP basic auth: ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``.

``redact`` is the second line of defence: every string the MLflow tracker records (params, tags,
run names, text artifacts) and every location it prints goes through it, so a password that
reaches fedlab some other way (an override of an unrelated key) is masked as ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# ``scheme://user:password@host``: the password is what lies between the first ':' after '//'
# and the last '@' before the host. A URL's user part cannot hold an unescaped '/', '?' or '#'.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):(?P<pw>[^/?#\s]*)@")

MASK = "***"


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def url_password(url: str) -> str | None:
    """The password a URL carries, if any."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def refuse_password(key: str, url: str) -> None:
    """A ``ConfigError`` naming ``key`` if ``url`` holds a password."""
    if not url_password(url):
        return
    from fedlab.errors import ConfigError

    scheme = url.split("://", 1)[0]
    if scheme.startswith("http"):
        where = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    else:
        where = "PGPASSWORD or a ~/.pgpass file (PGPASSFILE) for PostgreSQL"
    raise ConfigError(
        f"{key}={redact(url)} holds a password, which would be logged; allowed: the URL "
        f"without the password, with the password in {where}"
    )
