"""No compression: each client uploads its float32 update."""

from __future__ import annotations

from fedlab.compression.base import COMPRESSION, Compressor


@COMPRESSION.register("none")
class NoCompression(Compressor):
    """Every hook of ``Compressor`` already sends the update as it is."""
