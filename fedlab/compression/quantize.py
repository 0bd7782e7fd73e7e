"""Stochastic uniform quantization of each update tensor to ``bits`` bits (QSGD, Alistarh et al.
2017, with a min-max range per tensor as TFF's ``EncodedSumFactory`` with
tensorflow_model_optimization's ``uniform_quantization`` encoder).

For a tensor with values in ``[lo, hi]`` and ``L = 2^bits - 1`` levels, each value ``x`` becomes
``t = (x - lo) / (hi - lo) * L``, rounded down or up at random with probability of rounding up
``t - floor(t)``, so that the decoded ``lo + q (hi - lo) / L`` is ``x`` in expectation
(unbiased). On the wire: ``bits`` per value plus the two float32 ends of the range per tensor.
``bits=32`` sends the float32 values themselves (no range): exactly no compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.compression.base import COMPRESSION, FLOAT32_BYTES, Compressor, CompressorConfig


@dataclass
class QuantizeConfig(CompressorConfig):
    bits: int = 8

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        if not 1 <= self.bits <= 32:
            raise ConfigError(
                f"compression.bits={self.bits} is invalid; allowed: an integer 1 <= bits <= 32"
            )


def quantize(a: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``a`` stochastically rounded to ``2^bits`` levels over its own range, decoded."""
    if a.size == 0:
        return a.copy()
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        return a.copy()  # every value is the range's end
    levels = float(2**bits - 1)
    scaled = (a.astype(np.float64) - lo) * (levels / (hi - lo))
    low = np.floor(scaled)
    q = low + (rng.random(a.shape) < scaled - low)
    return (lo + q * ((hi - lo) / levels)).astype(np.float32)


@COMPRESSION.register("quantize")
class Quantize(Compressor):
    Config = QuantizeConfig
    active = True
    engines = ("fast",)
    missing_on_tff = "fedlab does not yet pass TFF's EncodedSumFactory encoders"

    def encode(self, update, client_state, round_num, client_id):
        bits = self.cfg.bits
        if bits == 32:
            return update, sum(a.size for a in update) * FLOAT32_BYTES, None
        rng = self.rng(round_num, client_id)
        decoded = [quantize(a, bits, rng) for a in update]
        nbytes = sum(math.ceil(a.size * bits / 8) + 2 * FLOAT32_BYTES for a in update)
        return decoded, nbytes, None
