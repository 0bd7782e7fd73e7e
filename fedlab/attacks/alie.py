"""A Little Is Enough (ALIE; Baruch, Baruch and Goldberg 2019): the colluding malicious clients
all upload, coordinate by coordinate, the honest updates' mean shifted by z standard deviations,

    Δ̃_j = μ_j − z · σ_j,

small enough per coordinate to pass the median, trimmed mean, Krum and Bulyan as one of the
honest, yet consistently biased. With n clients in the round and f of them malicious, the paper
takes the largest z that still leaves the malicious majority it needs: s = ⌊n/2 + 1⌋ − f
honest "supporters", and z = Φ⁻¹((n − s) / n) (Baruch et al. 2019, Algorithm 3; the same as
TheBats' reimplementation; Karimireddy et al.'s epfml code uses (n − f − s)/(n − f), a variant).
The direction μ − zσ is epfml's (``codes/attacks/alittle.py``: ``mu - std * z_max``). ``z``
fixes z instead (null: the paper's, per round). μ and σ (sample std, ddof=1, as ``torch.std``)
are over the round's benign updates, or over every honestly trained update where fewer than
two are benign (``fedlab.attacks.base.benign_view``). s is kept at least 1 so that z stays
finite when more than half are malicious (the paper assumes they are not)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig, benign_view, replace_malicious
from fedlab.errors import ConfigError


@dataclass
class AlieConfig(MaliciousConfig):
    z: float | None = None  # null: Baruch et al.'s z_max from the round's n and f

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.z is not None and not math.isfinite(self.z):
            raise ConfigError(f"attack.z={self.z} is invalid; allowed: null or a finite number")


def z_max(n: int, f: int) -> float:
    """Baruch et al. 2019's z for ``f`` malicious of ``n`` clients."""
    supporters = max(math.floor(n / 2 + 1) - f, 1)
    return NormalDist().inv_cdf((n - supporters) / n)


@ATTACKS.register("alie")
class Alie(Attack):
    Config = AlieConfig
    omniscient = True
    label = "ALIE"

    def collude(self, updates, malicious, round_num):
        n, f = len(updates), int(sum(malicious))
        z = self.cfg.z if self.cfg.z is not None else z_max(n, f)
        seen = benign_view(updates, malicious, need=2)
        crafted = []
        for layer in zip(*seen, strict=True):
            stacked = np.stack(layer).astype(np.float64)
            std = stacked.std(axis=0, ddof=1) if len(stacked) > 1 else np.zeros_like(stacked[0])
            crafted.append((stacked.mean(axis=0) - z * std).astype(np.float32))
        return replace_malicious(updates, malicious, crafted), {"z": float(z)}
