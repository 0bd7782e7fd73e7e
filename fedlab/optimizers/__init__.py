"""Client and server optimizers: one module each, one schema for both roles.

McMahan et al.'s FedAvg is client SGD with a server that adds the mean update (server SGD, lr
1.0); Reddi et al. 2020 ("Adaptive Federated Optimization") swap the server optimizer for
momentum, Adam, Yogi or Adagrad. Each module registers one optimizer with the formulas of TFF
0.87's ``tff.learning.optimizers`` (so that ``engine=fast`` computes what ``engine=tff``
computes) and the name of TFF's builder for it. Adding one: a module here (its class, and its
``Config`` if it has hyperparameters of its own) and a YAML file in ``conf/client_optimizer/``
(whose defaults list takes ``/_client_optimizer``: the keys every client optimizer has) and
``conf/server_optimizer/``.
"""

from fedlab.optimizers.base import (
    OPTIMIZERS,
    Optimizer,
    OptimizerConfig,
    build_optimizer,
    optimizer_config,
)

__all__ = ["OPTIMIZERS", "Optimizer", "OptimizerConfig", "build_optimizer", "optimizer_config"]
