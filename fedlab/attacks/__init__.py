"""Malicious clients (the ``attack`` config group): ``none``; model poisoning (``sign_flip``,
``gaussian``, ``scaling``), omniscient colluding attacks (``alie``, ``ipm``, ``min_max``) and
data poisoning (``label_flip``, ``backdoor``). ``fedlab.aggregators`` holds the defences."""

from fedlab.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    MaliciousConfig,
    build_attack,
    malicious_clients,
    poisoned,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "MaliciousConfig",
    "build_attack",
    "malicious_clients",
    "poisoned",
]
