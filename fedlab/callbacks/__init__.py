"""What the round loop does after each round besides training: one callback per concern.

The loop (``fedlab.core.loop``) calls, for every callback in order, ``measure`` (add the round's
metrics and what the run has reached, before the round becomes the run's state) and then
``after_round`` (record it, once it has), as pfl-research's training-process callbacks; and
``on_train_begin`` / ``on_train_end`` / ``on_interrupt`` around the rounds. Which callbacks a run
has is the ``callbacks`` config group (``fedlab.callbacks.base``); each module here registers
one (the registry finds them: a new one is a module and a line in ``conf/callbacks/``).
"""

from fedlab.callbacks.base import (
    CALLBACKS,
    Callback,
    CallbackConfig,
    Progress,
    RoundRecord,
    RunSetup,
    TrainingContext,
)
from fedlab.callbacks.checkpoint import CheckpointCallback
from fedlab.callbacks.communication import CommunicationCallback
from fedlab.callbacks.evaluation import EvaluationCallback
from fedlab.callbacks.personalized import PersonalizedCallback
from fedlab.callbacks.privacy import PrivacyCallback
from fedlab.callbacks.progress import ProgressCallback
from fedlab.callbacks.target import TargetCallback, TimingCallback
from fedlab.callbacks.tracking import TrackingCallback

__all__ = [
    "CALLBACKS",
    "Callback",
    "CallbackConfig",
    "CheckpointCallback",
    "CommunicationCallback",
    "EvaluationCallback",
    "PersonalizedCallback",
    "PrivacyCallback",
    "Progress",
    "ProgressCallback",
    "RoundRecord",
    "RunSetup",
    "TargetCallback",
    "TimingCallback",
    "TrackingCallback",
    "TrainingContext",
]
