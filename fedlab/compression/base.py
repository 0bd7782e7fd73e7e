"""The compressor interface: a client's model update in, what the server decodes and the bytes
it took on the wire out.

Each sampled client encodes its update ``initial - trained`` before uploading it; the server
decodes it and hands the decoded update to the aggregator (and so to DP-FedAvg's clipping, which
therefore bounds what is actually summed). Only the model update is compressed: what an
algorithm uploads beside it (SCAFFOLD's ``delta_c_i``) travels as float32. ``encode`` returns the
decoded arrays directly (the simulation needs no wire format), with the exact size the encoding
takes: values, indices and ranges.

A compressor may keep state per client (top-k's error feedback: what was left out, added to the
next update): ``keeps_client_state``; the fast engine stores it beside the algorithm's per-client
state (``fedlab.core.client_state``), so it is checkpointed and resumed with it.

Randomness (stochastic rounding) is drawn from a generator seeded by the run's seed, the round and
the client, so a round is reproducible whatever order the clients train in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedlab import streams
from fedlab.plugin import Plugin, PluginConfig, Registry

Arrays = list[np.ndarray]
FLOAT32_BYTES = 4


@dataclass
class CompressorConfig(PluginConfig):
    """The keys every compressor has; one with keys of its own extends it."""


class Compressor(Plugin):
    """No compression: the float32 update as it is."""

    Config: ClassVar[type] = CompressorConfig
    keeps_client_state: ClassVar[bool] = False
    #: Whether it changes the update at all (``none`` does not: the engine then reports no
    #: encoded size and the communication callback counts one float32 model copy per client).
    active: ClassVar[bool] = False

    def __init__(self, cfg: Any, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    def rng(self, round_num: int, client_id: int) -> np.random.Generator:
        return streams.quantization(self.seed, round_num, client_id)

    def encode(
        self, update: Arrays, client_state: Arrays | None, round_num: int, client_id: int
    ) -> tuple[Arrays, int, Arrays | None]:
        """(the update as the server decodes it, the bytes its encoding takes, the client's new
        state or None)."""
        return update, sum(a.size for a in update) * FLOAT32_BYTES, None


COMPRESSION: Registry[type[Compressor]] = Registry("compression", "fedlab.compression", Compressor)


def build_compressor(cfg: Any, seed: int) -> Compressor:
    return COMPRESSION.of(cfg)(cfg, seed)
