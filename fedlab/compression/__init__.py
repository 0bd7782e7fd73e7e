"""Compression of the clients' uploads (the ``compression`` config group): ``none``,
``quantize`` (stochastic uniform quantization, QSGD / TFF's), ``topk`` (the k largest entries,
optionally with error feedback)."""

from fedlab.compression.base import COMPRESSION, Compressor, CompressorConfig, build_compressor

__all__ = ["COMPRESSION", "Compressor", "CompressorConfig", "build_compressor"]
