"""No differential privacy: the configured aggregator, and no privacy accounting."""

from __future__ import annotations

from fedlab.privacy.base import PRIVACY, Privacy


@PRIVACY.register("none")
class NoPrivacy(Privacy):
    """Every hook of ``Privacy`` already does nothing."""
