"""Which devices and threads TensorFlow may use, in fedlab's process and in TFF's worker.

TFF computes in a separate ``worker_binary`` process, which does not see ``tf.config`` calls made
here: it gets the same choice through the environment variables TensorFlow's C++ runtime reads
(``CUDA_VISIBLE_DEVICES``, ``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``).
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from fedlab.config import Device, Engine, HardwareConfig
from fedlab.errors import ConfigError


def configure(cfg: HardwareConfig, engine: Engine = Engine.tff) -> dict[str, str]:
    """Apply ``cfg`` to this process's TensorFlow; return the environment for TFF's worker.

    Must run before TensorFlow creates its first tensor (threads and devices are fixed then).
    ``engine=fast`` on the CPU gets one intra-op thread unless ``intra_op_threads`` says
    otherwise: that engine trains one client per core (``fedlab.backends.fast``), which measured
    faster than clients sharing a pool of threads.
    """
    env: dict[str, str] = {}
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device is Device.gpu:
        if not gpus:
            raise ConfigError(
                "hardware=gpu, but TensorFlow sees no GPU on this machine; "
                "allowed here: hardware=cpu"
            )
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, cfg.gpu_memory_growth)
        if cfg.gpu_memory_growth:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    else:
        tf.config.set_visible_devices([], "GPU")
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if cfg.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.intra_op_threads)
        env["TF_NUM_INTRAOP_THREADS"] = str(cfg.intra_op_threads)
    elif engine is Engine.fast and cfg.device is Device.cpu:
        # TensorFlow may have started in this process already with its default pool (an
        # earlier engine=tff job of the same sweep): then slower, with the same numbers.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)
    if cfg.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(cfg.inter_op_threads)
        env["TF_NUM_INTEROP_THREADS"] = str(cfg.inter_op_threads)
    return env
