"""No attack: every client is honest."""

from __future__ import annotations

from fedlab.attacks.base import ATTACKS, Attack


@ATTACKS.register("none")
class NoAttack(Attack):
    """Every hook of ``Attack`` already leaves the clients honest; it runs on both engines."""

    engines = ("fast", "tff")
