"""Label flipping: a malicious client trains honestly on its own examples with every label
``l`` replaced by ``C − 1 − l`` (C classes; on MNIST 0↔9, 1↔8, ...): the label-flipping attack
of Byzantine-robust FL benchmarks, checked against Karimireddy, He and Jaggi 2022's code
(epfml/byzantine-robust-noniid-optimizer, ``codes/attacks/labelflipping.py``: ``9 - target`` on
MNIST and CIFAR-10). Its upload is what that training gives. It acts
through the client's data (``fedlab.attacks.poisoned``), so it reaches every placement."""

from __future__ import annotations

from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig


@ATTACKS.register("label_flip")
class LabelFlip(Attack):
    Config = MaliciousConfig
    poisons_data = True
    label = "label flipping"

    def poison_data(self, x, y, client_id):
        return x, (self.num_classes - 1 - y).astype(y.dtype)
