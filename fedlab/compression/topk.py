"""Top-k sparsification (Aji and Heafield 2017; with error feedback, Stich et al. 2018,
"Sparsified SGD with Memory"): each client uploads only the ``k`` entries of its update (over the
whole model) that are largest in magnitude, as (index, value) pairs: 4 + 4 bytes each.

With ``error_feedback`` a client keeps what it left out and adds it to its next update before
choosing the k entries (its residual, per client, checkpointed with the run), so that no part of
an update is lost for good, only delayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.compression.base import COMPRESSION, FLOAT32_BYTES, Compressor, CompressorConfig

INDEX_BYTES = 4  # int32 indices: models of up to 2^31 parameters


@dataclass
class TopKConfig(CompressorConfig):
    k: int = 10000
    error_feedback: bool = False

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        if self.k < 1:
            raise ConfigError(f"compression.k={self.k} is invalid; allowed: an integer >= 1")


def model_size(run) -> int:
    """The trainable parameters of the run's model (builds it: TensorFlow, at compose time)."""
    from fedlab.data import DATASETS
    from fedlab.models import build_model

    dataset = DATASETS.get(run.dataset.name)
    model = build_model(run.model.name, dataset.input_shape, dataset.num_classes)
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def top_k(update: list[np.ndarray], k: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``update`` with all but its k largest-magnitude entries zeroed, and their flat indices."""
    flat = np.concatenate([a.ravel() for a in update])
    keep = np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :]
    sparse = np.zeros_like(flat)
    sparse[keep] = flat[keep]
    out, start = [], 0
    for a in update:
        out.append(sparse[start : start + a.size].reshape(a.shape))
        start += a.size
    return out, keep


@COMPRESSION.register("topk")
class TopK(Compressor):
    Config = TopKConfig
    active = True
    engines = ("fast",)
    missing_on_tff = "TFF 0.87 has no top-k aggregator"

    @property
    def keeps_client_state(self) -> bool:  # type: ignore[override]
        return self.cfg.error_feedback

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.errors import ConfigError

        size = model_size(run)
        if cfg.k > size:
            raise ConfigError(
                f"compression.k={cfg.k} is larger than model={run.model.name}, which has "
                f"{size} parameters; allowed: 1 <= k <= {size}"
            )

    def encode(self, update, client_state, round_num, client_id):
        if self.cfg.error_feedback and client_state is not None:
            update = [u + r for u, r in zip(update, client_state, strict=True)]
        sparse, _ = top_k(update, self.cfg.k)
        residual = None
        if self.cfg.error_feedback:
            residual = [u - s for u, s in zip(update, sparse, strict=True)]
        return sparse, self.cfg.k * (FLOAT32_BYTES + INDEX_BYTES), residual
