"""Every error fedlab raises for bad input or a bad environment, under one root.

This module imports nothing from fedlab, nor Hydra or TensorFlow: a plug-in, an engine or a Ray
actor raises these without loading the command line's formatting. ``str(err)`` is one line that
names the value at fault and what is allowed; the entry point (``fedlab.describe``) prints it as
``fedlab: error: ...`` with exit status 2, and anything else keeps its traceback (a bug).

    FedlabError
    ├── ConfigError        a configuration value outside what fedlab allows (at compose time)
    │   └── PartitionError a partition that cannot be made from these examples
    └── UserError          found while running: the data, a checkpoint, a worker, a cluster
        ├── DataSourceError, CheckpointError, WorkerError, PlacementError, ReportError,
        │   NotInstalledError (an option whose extra is not installed)
        └── DivergedError  training produced a non-finite loss or update
"""

from __future__ import annotations

import threading


class FedlabError(Exception):
    """The user's input or environment is at fault (not fedlab); the message is one line."""


class ConfigError(FedlabError, ValueError):
    """A configuration value is outside what fedlab allows; found when the config is composed."""


class PartitionError(ConfigError):
    """A partition that cannot be made (too many clients for the examples, a bad count)."""


class UserError(FedlabError, RuntimeError):
    """A problem with the user's input or environment found while running."""


class DivergedError(UserError):
    """Training produced a non-finite loss (e.g. a learning rate far too large)."""


class DataSourceError(UserError):
    """A dataset's local file is missing, unreadable or not what it should be."""


class CheckpointError(UserError):
    """A checkpoint cannot be used (corrupt, or from another config or model)."""


class WorkerError(UserError):
    """TFF's worker process could not be started or stopped answering."""


class PlacementError(UserError):
    """A round's clients could not be trained where ``placement`` put them (Ray)."""


class NotInstalledError(UserError):
    """An option whose packages are an extra this environment was installed without."""


class ReportError(UserError):
    """The report cannot be made from what the tracking store holds."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, taking Ctrl-C's way out: the run is marked KILLED and TFF's worker stops."""


# Set by the SIGTERM handler. The handler raises Terminated wherever Python happens to be, and
# inside TensorFlow's tracing that can surface as another error (autograph's context stack
# asserting, seen in CI); the round loop then still treats the run as terminated.
TERMINATION_REQUESTED = threading.Event()
