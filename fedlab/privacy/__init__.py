"""Differential privacy of the clients (the ``privacy`` config group): ``none``, or
``dp_fedavg`` (McMahan et al. 2018), with its privacy accountant."""

from fedlab.privacy.base import PRIVACY, Privacy, PrivacyConfig, build_privacy

__all__ = ["PRIVACY", "Privacy", "PrivacyConfig", "build_privacy"]
