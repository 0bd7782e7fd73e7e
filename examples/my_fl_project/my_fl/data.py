"""A dataset of one's own: four Gaussian blobs in the plane, one class each, drawn from a fixed
seed (nothing to download). A dataset says what is known before loading it (shape, classes,
examples) so that fedlab checks a config against it without loading anything."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from fedlab.data import DatasetConfig, DatasetSpec


@dataclass
class BlobsConfig(DatasetConfig):
    spread: float = 0.5  # the blobs' standard deviation


class Blobs(DatasetSpec):
    Config = BlobsConfig
    train_examples = 4000
    input_shape = (2,)
    num_classes = 4

    @classmethod
    def load(cls, cfg):
        rng = np.random.default_rng(2017)
        centres = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32) * 2

        def draw(n):
            y = rng.integers(0, cls.num_classes, n).astype(np.int32)
            x = centres[y] + rng.normal(0, cfg.spread, (n, 2)).astype(np.float32)
            return x.astype(np.float32), y

        x_train, y_train = draw(cls.train_examples)
        x_test, y_test = draw(1000)
        return SimpleNamespace(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
