"""Where the clients of a round train (``placement=``): in this process, or over a Ray cluster.

A round of ``engine=fast`` is "train these clients, then combine": the engine builds the round's
``Broadcast`` (the global weights, the client hyperparameters, the algorithm's and the
aggregator's server state), hands it with the sampled clients' ``ClientWork`` to its placement,
and gets back ``SliceResult``s, which it combines and steps the server optimizer with.

- ``placement=local`` (``LocalPlacement``, the default): every client in this process, on
  threads; the aggregator sees every update (one slice).
- ``placement=ray`` (``RayPlacement``): ``placement.actors`` Ray actors, as Flower's simulation
  engine places its clients. **Placement** is the cut of a round's cohort into slices: the
  client at position ``j`` of the round's m sampled clients goes to actor ``floor(j * N / m)``
  (``np.array_split``: contiguous slices, sizes differing by at most one). It depends only on the
  cohort and the number of actors N, never on which node an actor lives on or which finishes
  first, so a round is a pure function of the state, the cohort and N: resuming with the same N
  is bit-identical. Each actor trains its slice and folds it into the aggregator's partial sum
  (for the mean ``sum(weight * update)`` and ``sum(weight)``; for DP-FedAvg the sum of the
  clipped updates and the unclipped count), plus the slice's metric sums; the server adds the
  slices in actor order and divides (``Aggregator.combine``), and DP-FedAvg's noise is drawn
  there, once. Only the order of the float32 additions differs from ``placement=local``: a
  round over N actors equals the single-process round to float32 round-off
  (``tests/test_placement.py`` states and checks the tolerance), and with one actor bit for bit.

What travels: each round, one ``Broadcast`` per actor (``ray.put`` once, read by all) and each
client's ``ClientWork`` without its examples; back, one partial sum per actor. What the algorithm
uploads beside the update (SCAFFOLD's ``delta_c_i``) comes back per client, in cohort order, for
``server_update``, and so does per-client state (SCAFFOLD's ``c_i``, top-k's residual), which the
server's ``ClientStateStore`` keeps and checkpoints: those cost a model-sized array per client,
as they do in memory with ``placement=local``. The examples never travel: each actor loads the
dataset itself, from the same local source and with the same partition as the server, once, and
checks that it holds the same arrays (``dataset_digest``); a node with another copy of the data
is refused in one line. Under a data attack (``fedlab.attacks``) the actor's malicious clients
train on poisoned examples as they do in one process: ``dataset_parts`` applies the attack (the
digest covers the clean arrays, which both sides poison the same way), and a malicious client's
upload is replaced where it trains (``ClientRunner``, given the run's attack).

Refused in one line when the config is composed (``RunConfig._check_placement``): the median and
the trimmed mean (they need every update, not a sum), an omniscient attack (it sees every
update), ``engine=tff``, ``hardware=gpu`` (actors train on CPUs) and more actors than clients a
round.

An actor builds its model, trainers and data once and keeps them for the whole run; it keeps
nothing of a round, so a slice trained again gives the same result. An actor that dies (its node
lost) fails the run, which is then FAILED in MLflow; running the same command again resumes it
from its last checkpoint. Actors are not restarted by Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from typing import Any

import numpy as np

from fedlab.backends.fast.engine import Broadcast, ClientRunner, SliceResult, fold_slice
from fedlab.core.types import ClientWork
from fedlab.errors import PlacementError

REACH_TIMEOUT_S = 5.0


def dataset_digest(dataset: Any) -> str:
    """A hash of the training examples and of each client's share of them: what the actors
    must hold exactly as the server does."""
    return dataset.digest()


class SliceTrainer:
    """The work of one Ray actor: the run's data and a ``ClientRunner``, built once from the
    run's config, then one slice of the cohort per round."""

    def __init__(self, cfg: Any, dataset_parts: Any) -> None:
        from fedlab import hardware
        from fedlab.backends.fast.functional import functional_model
        from fedlab.quiet import silence_frameworks

        silence_frameworks()
        # One intra-op thread per client, as engine=fast in one process: each client is then
        # computed as it is there, bit for bit.
        hardware.configure(dataclasses.replace(cfg.hardware, intra_op_threads=1), cfg.engine)
        self.dataset, parts = dataset_parts(cfg)
        self.aggregator = parts.aggregator
        self.runner = ClientRunner(
            functional_model(parts.make_model()),
            parts.client_optimizer,
            parts.algorithm,
            parts.compressor,
            cfg.placement.cpus_per_actor,
            parts.target_shape,
            parts.pad_label,
            parts.seed,
            parts.attack,
        )
        self.digest = dataset_digest(self.dataset)

    def where(self) -> dict[str, str]:
        """The Ray node, host and process this actor lives in, and its data's digest."""
        import ray

        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "digest": self.digest,
        }

    def train(self, broadcast: Broadcast, clients: list[ClientWork]) -> SliceResult:
        """The slice ``clients`` (without their examples), trained and folded."""
        filled = []
        for work in clients:
            x, y = self.dataset.client_data(work.client_id)
            visits = np.asarray(work.order).shape[-1] if np.asarray(work.order).size else 0
            if visits and visits != len(x):
                raise ValueError(
                    f"client {work.client_id} holds {len(x)} examples on this actor, and the "
                    f"server's order visits {visits}: the data differ"
                )
            filled.append(dataclasses.replace(work, x=x, y=y))
        results = self.runner.train(broadcast, filled)
        return fold_slice(filled, results, self.aggregator, broadcast.aggregator)


def _check_reachable(address: str | None) -> None:
    """An explicit ``HOST:PORT`` that nothing listens on fails here, in one line, within
    seconds: given one, ``ray.init`` keeps retrying for minutes (seen: over 5 minutes for a
    closed port on loopback) before it gives up."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, ValueError) as err:
        raise PlacementError(
            f"placement.address={address}: nothing answers there ({err}); allowed: the address "
            "`ray start --head` printed (HOST:PORT), auto (the cluster this machine is a node "
            "of), or null (a Ray of this run's own)"
        ) from None


class RayPlacement:
    """``placement=ray``: the round's clients cut into ``cfg.placement.actors`` contiguous slices,
    one per actor (see the module's docstring)."""

    def __init__(self, cfg: Any, dataset: Any, dataset_parts: Any) -> None:
        import ray

        placement = cfg.placement
        self._ray = ray
        self.clients_per_round = cfg.clients_per_round
        self._owns_ray = not ray.is_initialized()  # inside a Ray job (hydra/launcher=ray): no
        if self._owns_ray:
            options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
            if placement.address is None:  # a Ray of its own, stopped with the run
                options.update(
                    num_cpus=placement.actors * placement.cpus_per_actor, include_dashboard=False
                )
            _check_reachable(placement.address)
            try:
                ray.init(address=placement.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise PlacementError(
                    f"placement.address={placement.address} is not a Ray cluster fedlab can join "
                    f"({first}); allowed: the address `ray start --head` printed, auto (the "
                    "cluster this machine is a node of), or null (a Ray of this run's own)"
                ) from None
        try:
            actor = ray.remote(
                num_cpus=placement.cpus_per_actor,
                # One actor per node as far as the CPUs allow: a round's work is spread over
                # machines before it shares one.
                scheduling_strategy="SPREAD",
                max_restarts=0,
            )(SliceTrainer)
            self.actors = [actor.remote(cfg, dataset_parts) for _ in range(placement.actors)]
            self.where = ray.get([a.where.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise
        digest = dataset_digest(dataset)
        for i, where in enumerate(self.where):
            if where["digest"] != digest:
                self.close()
                raise PlacementError(
                    f"placement=ray: actor {i} on host {where['host']} (Ray node "
                    f"{where['node']}) loaded other training data than this process (digest "
                    f"{where['digest']}, here {digest}); every node needs the same dataset copy"
                )

    def train(self, broadcast: Broadcast, clients: list[ClientWork]) -> list[SliceResult]:
        """The slices' results, in actor order (the order the server adds them in)."""
        for work in clients:
            if work.client_id < 0:
                raise ValueError("placement=ray needs each client's id to find its data")
        ray = self._ray
        shared = ray.put(broadcast)
        cut = np.array_split(np.arange(len(clients)), len(self.actors))
        pending = [
            actor.train.remote(
                shared, [dataclasses.replace(clients[j], x=None, y=None) for j in positions]
            )
            for actor, positions in zip(self.actors, cut, strict=True)
            if len(positions)
        ]
        try:
            return ray.get(pending)
        except ray.exceptions.RayActorError as err:
            # A lost node takes its actor with it; Ray does not restart actors here.
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PlacementError(
                f"placement=ray: an actor died during the round ({first}); run the same command "
                "again to continue from the last checkpoint"
            ) from err

    def tags(self) -> dict[str, str]:
        """Where the actors live, actor by actor (the MLflow tags of the run)."""
        sizes = [len(s) for s in np.array_split(np.arange(self.clients_per_round), len(self.where))]
        return {
            "fedlab.placement.nodes": ",".join(w["node"] for w in self.where),
            "fedlab.placement.hosts": ",".join(w["host"] for w in self.where),
            "fedlab.placement.slice_sizes": ",".join(map(str, sizes)),
        }

    def close(self) -> None:
        ray = self._ray
        for actor in getattr(self, "actors", []):
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
