"""What a round communicates (McMahan et al. 2017 count rounds of communication; fedlab also
counts the bytes): the broadcast to the sampled clients and their uploads, as float32 arrays of
the model's size, as many as the algorithm sends each way (SCAFFOLD: the model and its control
variate both ways). An algorithm that keeps some arrays on the clients (FedPer's head:
``Algorithm.shared``) sends and receives only the others. With compression
(``fedlab.compression``) the engine reports what the model updates took encoded (values,
indices, ranges), and that replaces one upload copy."""

from __future__ import annotations

import dataclasses

from fedlab.callbacks.base import CALLBACKS, Callback

BYTES_PER_MB = 1e6


@CALLBACKS.register("communication")
class CommunicationCallback(Callback):
    def __init__(self, cfg=None) -> None:
        super().__init__(cfg)
        self.unshared_bytes = 0  # the bytes of the arrays a client keeps to itself

    def on_train_begin(self, ctx) -> None:
        shared = ctx.algorithm.shared()  # the trainable arrays, which come first
        if not all(shared):
            weights = ctx.engine.model_weights(ctx.state)
            self.unshared_bytes = sum(
                w.nbytes for w, s in zip(weights, shared, strict=False) if not s
            )

    def measure(self, ctx, record) -> None:
        algorithm = ctx.algorithm
        per_copy = (ctx.model_bytes - self.unshared_bytes) * record.clients
        broadcast_mb = algorithm.broadcast_copies * per_copy / BYTES_PER_MB
        update_bytes = record.output.update_bytes
        if update_bytes is None:
            update_bytes = per_copy  # float32, one model copy per client
        uploaded_mb = ((algorithm.upload_copies - 1) * per_copy + update_bytes) / BYTES_PER_MB
        total_mb = record.progress.total_mb + broadcast_mb + uploaded_mb
        record.progress = dataclasses.replace(record.progress, total_mb=total_mb)
        record.metrics.update(
            {
                "comm/broadcast_mb": broadcast_mb,
                "comm/uploaded_mb": uploaded_mb,
                "comm/total_mb": total_mb,
            }
        )
