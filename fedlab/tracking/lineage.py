"""A run's lineage as MLflow shows it: where it came from and what it was made of.

- the data it trained and was evaluated on, as MLflow dataset inputs (``dataset_records``: name,
  source, a digest of what was loaded and how it was partitioned, a profile);
- MLflow's source and user tags (``source_tags``: the UI's Source and User columns);
- a tag naming its configuration without its seed (``configuration_name``), so that the UI's
  "Group by" gathers a configuration's seeds as ``fedlab.report`` does.

The tracker records them (``Tracker.log_datasets``, tags at ``start``); this module only says
what they are.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from fedlab import checkpoint, logs
from fedlab.config import RunConfig, run_params
from fedlab.tracking.base import DatasetRecord

log = logging.getLogger(__name__)

# The tag that names a run's configuration without its seed: the MLflow UI's "Group by" on it
# gathers a configuration's seeds, as the report does (the same definition:
# fedlab.checkpoint.configuration_key).
CONFIGURATION_TAG = "fedlab.configuration"


def configuration_name(cfg: RunConfig, recipe: str) -> str:
    """``FedAvg · mnist · 2nn · shards · 1a2b3c4d5e6f``, from the run's ``recipe``
    (``fedlab.experiment.algorithm_name``): readable, and equal exactly for runs that differ
    only in seed and bookkeeping (``checkpoint.configuration_key``)."""
    parts = (recipe, cfg.dataset.name, cfg.model.name, cfg.partition.name)
    return " · ".join([*parts, checkpoint.configuration_key(cfg)])


def source_tags() -> dict[str, str]:
    """MLflow's source and user tags (the UI's Source and User columns): the command line
    (``python -m fedlab``) or the script or notebook that called ``fedlab.run``, and the user."""
    import getpass

    entry = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if entry is not None and entry.name == "__main__.py" and entry.parent.name == "fedlab":
        source = "python -m fedlab"
    else:
        source = str(entry) if entry is not None else "python"
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return {"mlflow.source.name": source, "mlflow.source.type": "LOCAL", "mlflow.user": user}


def dataset_records(cfg: RunConfig, dataset: Any) -> list:
    """The run's lineage: the training examples as partitioned over the clients, and the test
    examples, each with a digest of what was loaded (``FederatedDataset.digest``)."""
    started = time.monotonic()
    partition = {k: v for k, v in run_params(cfg).items() if k.startswith("partition.")}
    records = [
        DatasetRecord(
            name=dataset.name,
            digest=dataset.digest(),
            source=dataset.source or dataset.name,
            context="training",
            profile={
                "examples": len(dataset.y_train),
                "clients": dataset.num_clients,
                "partition": cfg.partition.name,
                **{k: v for k, v in partition.items() if k != "partition.name"},
                "partition_seed": cfg.seed,
            },
        ),
        DatasetRecord(
            name=dataset.name,
            digest=dataset.test_digest(),
            source=dataset.source or dataset.name,
            context="evaluation",
            profile={
                "examples": len(dataset.y_test),
                **({"clients": len(dataset.test_clients)} if dataset.test_clients else {}),
            },
        ),
    ]
    log.info(
        "lineage: %s training data digest %s, test data digest %s (hashed in %.1f s)",
        dataset.name,
        records[0].digest,
        records[1].digest,
        time.monotonic() - started,
        extra=logs.FILE_ONLY,
    )
    return records
