"""No compression: each client uploads its float32 update."""

from __future__ import annotations

from fedlab.compression.base import COMPRESSION, Compressor


@COMPRESSION.register("none")
class NoCompression(Compressor):
    name = "none"
