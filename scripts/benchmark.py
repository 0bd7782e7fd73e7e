#!/usr/bin/env python
"""How fast fedlab runs a round of FedAvg, against the seed notebook's way of running it.

Usage (from the repository root):

    ./.venv/bin/python scripts/benchmark.py                     # the three paths, 1 + 5 rounds
    ./.venv/bin/python scripts/benchmark.py --rounds 10 --json bench.json
    ./.venv/bin/python scripts/benchmark.py --paths fast --clients 100,3400   # scaling in K
    ./.venv/bin/python scripts/benchmark.py --to-accuracy --max-rounds 300    # long
    ./.venv/bin/python scripts/benchmark.py --workload shakespeare --paths tff,fast
    ./.venv/bin/python scripts/benchmark.py --paths fast --algorithm feddyn \
        --client-optimizer sgd --server-optimizer sgd      # another algorithm's round

Workload: the notebook's configuration (McMahan et al. 2017's MNIST CNN, K=100 IID clients of
600 examples, C=0.1 so 10 clients a round, B=10, E=1, client Adam 2e-4, server Adam 1e-3). Every
path trains the same clients, in the same order of examples, in every round.

``--algorithm NAME`` times fedlab's round of another algorithm on the same clients (tff and fast
paths; the reference is TFF's FedAvg): ``--client-optimizer sgd`` and ``--server-optimizer sgd``
(lr 1.0) replace the notebook's Adams where the algorithm needs them, and a recipe fedlab refuses
(FedDyn with server Adam) stops the benchmark with fedlab's one-line error before any path runs.

``--workload shakespeare``: McMahan et al.'s Shakespeare round instead (the character LSTM,
``experiment=table2_shakespeare``'s setting: a client per speaking role of the Gutenberg texts,
client SGD 1.47, server SGD 1.0, B=10, E=1), 10 clients a round, on the tff and fast paths (the
reference and the ceiling are the notebook's MNIST CNN). Roles differ in size, so a round's
examples vary: examples/s and GFLOP/s use each path's mean examples over its timed rounds (the
same rounds on both paths).

Paths, each in a child process of its own (so that start-up and memory are its own):
  reference  the notebook's way, untuned: ``tff.learning.algorithms.build_weighted_fed_avg`` on a
             Keras model, one ``tf.data`` dataset per client, TFF's default execution context
             (which starts TFF's ``worker_binary``).
  tff        fedlab's ``engine=tff`` (fedlab's TffFedAvg in fedlab's own TFF worker).
  fast       fedlab's ``engine=fast``, its default and fastest path (fedlab.backends.fast: the same
             arithmetic in-process, plain TensorFlow, one single-threaded client per core).
  ceiling    not a path: the best throughput of a plain in-process training step of the same CNN
             (Keras, fused Adam) at large batches, the FLOP ceiling of this model on this machine.

Each path runs ``--warmup`` round(s), then ``--rounds`` timed rounds. Printed per path:
  s/round        median (min-max) wall seconds of one training round (sampling the clients,
                 building their work, the round; not fedlab's test-set evaluation)
  examples/s     training examples of a round / median s/round
  GFLOP/s        training FLOPs of a round / median s/round; training FLOPs per example =
                 3 x forward (backward ~ 2 x forward) x 2 FLOPs per multiply-accumulate, counted
                 from the model's layer shapes
  start-up s     from just before the parent starts the child process to the moment the first
                 (warm-up) round starts: Python, imports, data, building the algorithm, the
                 worker; "1st round s" is to the end of the warm-up round (tracing included)
  peak RSS MB    the highest sum of resident memory over the child and all its descendants
                 (TFF's worker_binary included), sampled every 0.1 s
  vs ref         s/round divided by the reference's
and, for the fast path, the median CPU seconds its process spent on a round (all its threads):
on a machine shared with other work, a steadier comparison of two algorithms than wall time.

``--clients 100,3400`` runs each path once per K (synthetic clients of 600 MNIST examples
re-used, 10 clients a round): a round must cost the same whatever the total number of clients.
``--to-accuracy`` runs one path (``--engine``, default fast) with the IID preset until the test
accuracy reaches ``--target`` (0.99), evaluating every ``--eval-every`` rounds, up to
``--max-rounds``, and prints the wall time and rounds.

No process outlives the benchmark: each child runs in a session of its own, the whole session
is killed when the child is done, and the benchmark checks that no worker_binary is left.

The report (and ``--json``) names the CPU it ran on, its model and vector extensions (AVX2,
AVX-512, AMX, ...): the same command gives figures several-fold apart on different CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script: fedlab from this checkout
PATHS = ("reference", "tff", "fast")
NOTEBOOK = {
    "model": "cnn",
    "clients_per_round": 10,
    "batch_size": 10,
    "epochs": 1,
    "client_adam_lr": 2e-4,
    "server_adam_lr": 1e-3,
    "examples_per_client": 600,
    "seed": 0,
}
# McMahan et al. 2017's Shakespeare LSTM round (experiment=table2_shakespeare), 10 roles a round.
SHAKESPEARE = {
    "model": "char_lstm",
    "clients_per_round": 10,
    "batch_size": 10,
    "epochs": 1,
    "client_sgd_lr": 1.47,
    "server_sgd_lr": 1.0,
    "seed": 0,
}
WORKLOADS = {"notebook": NOTEBOOK, "shakespeare": SHAKESPEARE}


# The SIMD extensions that decide how fast TensorFlow's CPU kernels run, as /proc/cpuinfo names
# them: figures differ several-fold between CPUs (docs/performance.md), so every report says
# which CPU it was taken on.
VECTOR_EXTENSIONS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model name and which of ``VECTOR_EXTENSIONS`` it has (from the first
    processor's ``model name`` and ``flags`` lines; "unknown" and [] where there are none)."""
    model, flags = "unknown", set()
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "vector_extensions": [e for e in VECTOR_EXTENSIONS if e in flags]}


# -- the child side: one path --------------------------------------------------------------------


def _client_indices(num_clients: int, seed: int) -> list:
    """K=100: fedlab's IID partition of MNIST. More: synthetic clients of 600 examples each,
    MNIST's examples re-used (index arrays only: the data is gathered for the sampled clients)."""

    from fedlab import data as fl_data
    from fedlab import streams

    rng = streams.partition(seed)
    if num_clients * NOTEBOOK["examples_per_client"] <= 60_000:
        return fl_data.iid(60_000, num_clients, rng)
    return [
        rng.choice(60_000, NOTEBOOK["examples_per_client"], replace=False)
        for _ in range(num_clients)
    ]


def _round_clients(
    dataset, clients, sampler, round_num: int, client_states: dict, workload: dict = NOTEBOOK
):
    """The ClientWork of round ``round_num``: as fedlab.experiment builds it."""
    from fedlab.core.sampling import local_order
    from fedlab.core.types import ClientWork

    work = []
    for client_id in sampler.sample(round_num):
        idx = clients[client_id]
        order = local_order(
            len(idx), workload["epochs"], workload["seed"], round_num, int(client_id)
        )
        work.append(
            ClientWork(
                dataset.x_train[idx],
                dataset.y_train[idx],
                order,
                workload["batch_size"],
                int(client_id),
                client_states.get(int(client_id)),
            )
        )
    return work


def _reference_process(tff, tf):
    """The notebook's setup on TFF 0.87: a Keras CNN on 28x28x1 images, TFF's Adam."""
    import collections

    def create_keras_model():
        layers = tf.keras.layers
        return tf.keras.models.Sequential(
            [
                layers.Input(shape=[28, 28, 1], dtype=tf.float32),
                layers.Conv2D(32, 5, padding="same", activation="relu"),
                layers.MaxPool2D(2, padding="same"),
                layers.Conv2D(64, 5, padding="same", activation="relu"),
                layers.MaxPool2D(2, padding="same"),
                layers.Flatten(),
                layers.Dense(512, activation="relu"),
                layers.Dense(10),
                layers.Activation(tf.nn.softmax),
            ]
        )

    spec = collections.OrderedDict(
        x=tf.TensorSpec([None, 28, 28, 1], tf.float32), y=tf.TensorSpec([None, 1], tf.int32)
    )

    def model_fn():
        return tff.learning.models.from_keras_model(
            create_keras_model(),
            input_spec=spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        )

    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_adam(NOTEBOOK["client_adam_lr"]),
        server_optimizer_fn=tff.learning.optimizers.build_adam(NOTEBOOK["server_adam_lr"]),
    )


def _reference_datasets(tf, work):
    """One tf.data dataset per client, batched and formatted as the notebook does."""
    import collections

    def fmt(x, y):
        return collections.OrderedDict(x=tf.reshape(x, [-1, 28, 28, 1]), y=tf.reshape(y, [-1, 1]))

    datasets = []
    for w in work:
        order = w.order.reshape(-1)
        ds = tf.data.Dataset.from_tensor_slices((w.x[order], w.y[order]))
        datasets.append(ds.batch(w.batch_size).map(fmt).prefetch(100))
    return datasets


def child(args: argparse.Namespace) -> None:
    """Run one path and print its figures as one JSON line."""
    path = args.child
    marks: dict[str, float] = {}
    import numpy as np
    import tensorflow as tf

    if path == "fast":  # what fedlab's run does for engine=fast, before TensorFlow starts
        from fedlab import hardware
        from fedlab.config import Engine, HardwareConfig

        hardware.configure(HardwareConfig(), Engine.fast)

    from fedlab import data as fl_data
    from fedlab.config import ClientSampling
    from fedlab.core.sampling import ClientSampler

    workload = WORKLOADS[args.workload]
    if args.workload == "shakespeare":
        from fedlab.models import build_model

        cfg = _run_config(path, args)
        dataset = fl_data.federate(cfg)
        clients = dataset.clients
        make_model = lambda: build_model(  # noqa: E731
            workload["model"], dataset.input_shape, dataset.num_classes
        )
    else:
        dataset = fl_data.load_mnist("auto", None)
        clients = _client_indices(args.num_clients, NOTEBOOK["seed"])
        make_model = lambda: _mnist_model(NOTEBOOK["model"])  # noqa: E731
    sampler = ClientSampler(
        ClientSampling.uniform, len(clients), workload["clients_per_round"], workload["seed"]
    )
    tf.keras.utils.set_random_seed(workload["seed"])
    initial = make_model().get_weights()

    if path == "ceiling":
        Path(args.result_file).write_text(json.dumps(_ceiling(tf, np, dataset, args)))
        return

    runtime = contextlib.nullcontext()
    if path == "reference":
        import tensorflow_federated as tff

        process = _reference_process(tff, tf)
        state = process.initialize()
        weights = process.get_model_weights(state)
        state = process.set_model_weights(
            state, tff.learning.models.ModelWeights(list(initial), list(weights.non_trainable))
        )

        def one_round(state, work):
            out = process.next(state, _reference_datasets(tf, work))
            return out.state, float(out.metrics["client_work"]["train"]["loss"])
    else:
        from fedlab.backends import build_engine, engine_runtime
        from fedlab.experiment import round_parts

        cfg = _run_config(path, args)
        runtime = engine_runtime(cfg.engine, {}, Path(os.devnull))
        parts = round_parts(
            cfg,
            tuple(dataset.input_shape) if args.workload == "shakespeare" else (28, 28, 1),
            dataset.num_classes if args.workload == "shakespeare" else 10,
            target_shape=tuple(dataset.y_train.shape[1:]),
            pad_label=getattr(dataset, "pad_label", None),
        )
        algorithm = build_engine(cfg.engine, parts)

    evaluate = None
    if args.to_accuracy:
        from fedlab.evaluation import Evaluator

        evaluate = Evaluator(_mnist_model(NOTEBOOK["model"]), dataset.x_test, dataset.y_test)
    with runtime:
        if path != "reference":
            state = algorithm.initialize(initial)

            def one_round(state, work):
                out = algorithm.next(state, work)
                client_states.update(out.client_states)
                return out.state, out.train_loss

        times, losses, history, round_examples = [], [], {}, []
        cpu_times = []  # CPU seconds of this process (engine=fast computes here, TFF elsewhere)
        total_rounds = args.warmup + args.rounds if not args.to_accuracy else args.max_rounds
        started = time.time()
        reached = None
        client_states: dict = {}  # SCAFFOLD's control variates, in memory
        for round_num in range(1, total_rounds + 1):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            if round_num == 1:
                marks["first_round_start"] = time.time()
            work = _round_clients(dataset, clients, sampler, round_num, client_states, workload)
            state, loss = one_round(state, work)
            times.append(time.perf_counter() - tick)
            cpu_times.append(time.process_time() - cpu_tick)
            round_examples.append(sum(len(w.x) for w in work) * workload["epochs"])
            losses.append(loss)
            if round_num == 1:
                marks["first_round_end"] = time.time()
            if evaluate is not None and (round_num % args.eval_every == 0):
                weights = (
                    process.get_model_weights(state).trainable
                    if path == "reference"
                    else algorithm.model_weights(state)
                )
                _, acc = evaluate([np.asarray(w) for w in weights])
                history[round_num] = acc
                print(
                    f"round {round_num}: test accuracy {acc:.4f} ({time.time() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if acc >= args.target:
                    reached = round_num
                    break
        wall = time.time() - started
    import resource

    Path(args.result_file).write_text(
        json.dumps(
            {
                "path": path,
                "num_clients": len(clients),
                "round_s": times[args.warmup :] if not args.to_accuracy else times,
                "warmup_s": times[: args.warmup],
                "round_cpu_s": cpu_times[args.warmup :] if not args.to_accuracy else cpu_times,
                "round_examples": round_examples[args.warmup :]
                if not args.to_accuracy
                else round_examples,
                "train_loss": losses,
                "marks": marks,
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "to_accuracy": {
                    "rounds": reached,
                    "wall_s": wall,
                    "history": history,
                    "target": args.target,
                }
                if args.to_accuracy
                else None,
            }
        )
    )


def _mnist_model(name: str):
    from fedlab.data.mnist import Mnist
    from fedlab.models import build_model

    return build_model(name, Mnist.input_shape, Mnist.num_classes)


def _overrides(path: str, args) -> list[str]:
    """fedlab's overrides of the notebook round for engine ``path``, with ``--algorithm``,
    ``--client-optimizer`` and ``--server-optimizer``."""
    if args.workload == "shakespeare":
        return [
            f"engine={path}",
            "experiment=table2_shakespeare",
            f"client_optimizer.lr={SHAKESPEARE['client_sgd_lr']}",
            f"server_optimizer.lr={SHAKESPEARE['server_sgd_lr']}",
            f"algorithm={args.algorithm}",
            *args.set,
        ]
    client = args.client_optimizer
    client_lr = NOTEBOOK["client_adam_lr"] if client == "adam" else args.client_sgd_lr
    server = args.server_optimizer
    server_lr = NOTEBOOK["server_adam_lr"] if server == "adam" else 1.0
    return [
        f"engine={path}",
        f"model={NOTEBOOK['model']}",
        f"algorithm={args.algorithm}",
        f"client_optimizer={client}",
        f"client_optimizer.lr={client_lr}",
        f"server_optimizer={server}",
        f"server_optimizer.lr={server_lr}",
        f"num_clients={args.num_clients}",
        *args.set,
    ]


def _run_config(path: str, args):
    """fedlab's checked config of the notebook round for engine ``path``, as the CLI makes it
    (each plug-in group converted to its option's schema, as ``round_parts`` takes it)."""
    from fedlab.api import compose

    return compose(_overrides(path, args))


def _check_configs(args) -> None:
    """Refuse, in fedlab's one line, a recipe fedlab would refuse (FedDyn with server Adam,
    FedNova with client Adam), before any path starts."""
    from fedlab.api import compose
    from fedlab.errors import ConfigError

    paths = [args.engine] if args.to_accuracy else args.paths.split(",")
    for path in sorted(set(paths) & {"tff", "fast"}):
        try:
            compose(_overrides(path, args))
        except ConfigError as err:
            raise SystemExit(f"benchmark: {err}") from None


def _ceiling(tf, np, dataset, args) -> dict:
    """Best GFLOP/s of a plain Keras training step of the CNN (Adam, fused) at large batches."""
    from fedlab.backends.fast.functional import functional_model

    model = _mnist_model(NOTEBOOK["model"])
    flops = functional_model(model).training_flops_per_example
    optimizer = tf.keras.optimizers.Adam(NOTEBOOK["client_adam_lr"])
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    results = {}
    for batch in args.ceiling_batches:
        x = tf.constant(dataset.x_train[:batch])
        y = tf.constant(dataset.y_train[:batch])
        steps = max(1, 1200 // batch)
        step(x, y)
        best = float("inf")
        for _ in range(args.ceiling_repeats):
            tick = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            float(step(x, y))
            best = min(best, (time.perf_counter() - tick) / ((steps + 1) * batch))
        results[str(batch)] = flops / best / 1e9
    return {"path": "ceiling", "gflops_by_batch": results}


# -- the parent side ---------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, command name) of every live (not zombie) process."""
    table = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        table[int(proc.name)] = (int(fields[1]), int(fields[3]), name)
    return table


def _tree(root: int) -> set[int]:
    """``root``, its descendants, and every process in its session."""
    table = _proc_table()
    found = {root} | {pid for pid, (_, sid, _) in table.items() if sid == root}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found & set(table)


def _rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run_child(path: str, args: argparse.Namespace, num_clients: int, extra=()) -> dict:
    """Run one path in a child process of its own session; return its figures."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        path,
        "--rounds",
        str(args.rounds),
        "--warmup",
        str(args.warmup),
        "--num-clients",
        str(num_clients),
        "--ceiling-batches",
        ",".join(map(str, args.ceiling_batches)),
        "--ceiling-repeats",
        str(args.ceiling_repeats),
        "--workload",
        args.workload,
        "--algorithm",
        args.algorithm,
        "--client-optimizer",
        args.client_optimizer,
        "--client-sgd-lr",
        str(args.client_sgd_lr),
        "--server-optimizer",
        args.server_optimizer,
        *[f"--set={item}" for item in args.set],
        *extra,
    ]
    # The result comes back in a file, not on stdout: TFF's worker_binary inherits the child's
    # stdout and can keep it open after the child has exited.
    result_file = Path(tempfile.mkdtemp(prefix="fedlab-bench-")) / "result.json"
    command += ["--result-file", str(result_file)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    launched = time.time()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=None if args.verbose else subprocess.DEVNULL,
        stderr=None if args.verbose else subprocess.DEVNULL,
        start_new_session=True,
    )
    peak = 0.0
    members: set[int] = {proc.pid}
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak, members
        while not stop.is_set():
            members |= _tree(proc.pid)
            peak = max(peak, _rss_mb(members))
            stop.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"benchmark: {path} ran past --timeout {args.timeout} s; stopped", file=sys.stderr)
    finally:
        stop.set()
        watcher.join()
        _kill_tree(proc, members)
    if not result_file.exists():
        return {"path": path, "num_clients": num_clients, "error": f"exit {proc.returncode}"}
    result = json.loads(result_file.read_text())
    shutil.rmtree(result_file.parent, ignore_errors=True)
    result["peak_rss_mb"] = peak
    marks = result.pop("marks", {})
    if "first_round_start" in marks:
        result["startup_s"] = marks["first_round_start"] - launched
        result["first_round_done_s"] = marks["first_round_end"] - launched
    return result


def _kill_tree(proc: subprocess.Popen, members: set[int]) -> None:
    """Kill the child's session and every process seen in its tree; check none is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in members | _tree(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        table = _proc_table()
        left = [pid for pid in members if pid in table]
        if not left:
            return
        time.sleep(0.1)
    raise SystemExit(f"benchmark: processes {left} of {proc.pid} outlived it")


def summarize(result: dict, flops_per_round: float, examples: int, ref_s: float | None) -> dict:
    times = result.get("round_s") or []
    if not times:
        return result
    med = statistics.median(times)
    if result.get("round_examples") and flops_per_round and examples:
        # Rounds of unequal work (Shakespeare's roles): the mean round's examples and FLOPs.
        mean_examples = statistics.mean(result["round_examples"])
        flops_per_round *= mean_examples / examples
        examples = mean_examples
    result.update(
        median_s=med,
        min_s=min(times),
        max_s=max(times),
        examples_per_s=examples / med,
        gflops=flops_per_round / med / 1e9,
        vs_reference=(med / ref_s) if ref_s else None,
    )
    return result


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'path':<10} {'K':>5} {'s/round med (min-max)':>24} {'examples/s':>10} "
        f"{'GFLOP/s':>8} {'start-up s':>10} {'1st round s':>11} {'peak RSS MB':>11} "
        f"{'vs ref':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['path']:<10} {r['num_clients']:>5} failed: {r['error']}")
            continue
        span = f"{r['median_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f})"
        print(
            f"{r['path']:<10} {r['num_clients']:>5} {span:>24} {r['examples_per_s']:>10.0f} "
            f"{r['gflops']:>8.1f} {_fmt(r.get('startup_s'), '.1f'):>10} "
            f"{_fmt(r.get('first_round_done_s'), '.1f'):>11} {r['peak_rss_mb']:>11.0f} "
            f"{_fmt(r.get('vs_reference'), '.2f'):>7}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="See the module docstring (scripts/benchmark.py) for every figure's definition.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help="comma-separated paths among reference,tff,fast (default: all three)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per path (5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (1)")
    parser.add_argument(
        "--clients",
        default="100",
        help="comma-separated K values, e.g. 100,3400 (synthetic clients when "
        "K*600 > 60,000); 10 clients a round in every case",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the FLOP ceiling")
    parser.add_argument(
        "--ceiling-batches",
        default="100,300,600",
        type=lambda s: [int(b) for b in s.split(",")],
        help="batch sizes of the ceiling measurement (100,300,600)",
    )
    parser.add_argument("--ceiling-repeats", type=int, default=3)
    parser.add_argument(
        "--to-accuracy",
        action="store_true",
        help="time one path to --target test accuracy (IID preset)",
    )
    parser.add_argument(
        "--engine", default="fast", choices=PATHS, help="the path --to-accuracy runs (fast)"
    )
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-rounds", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before a child is stopped (3600)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument(
        "--algorithm",
        default="fedavg",
        help="fedlab's algorithm for the tff and fast paths (fedavg, fedprox, scaffold, ...)",
    )
    parser.add_argument(
        "--client-optimizer",
        default="adam",
        choices=("adam", "sgd"),
        help="the notebook's client Adam (2e-4), or SGD (--client-sgd-lr; SCAFFOLD and FedNova "
        "need it)",
    )
    parser.add_argument("--client-sgd-lr", type=float, default=0.05)
    parser.add_argument(
        "--server-optimizer",
        default="adam",
        choices=("adam", "sgd"),
        help="the notebook's server Adam (1e-3), or SGD with lr 1.0 (FedAvg's; FedDyn needs it)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another fedlab override for the tff and fast paths (e.g. algorithm.mu=0.01)",
    )
    parser.add_argument(
        "--workload",
        default="notebook",
        choices=sorted(WORKLOADS),
        help="notebook: the seed notebook's MNIST CNN round (default); shakespeare: McMahan's "
        "character-LSTM round, 10 roles (tff and fast paths only)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--num-clients", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    _check_configs(args)
    from fedlab.backends.fast.functional import functional_model

    workload = WORKLOADS[args.workload]
    if args.workload == "shakespeare":
        from fedlab.data.shakespeare import SEQUENCE_LENGTH, VOCAB_SIZE
        from fedlab.models import build_model

        bad = sorted(set(args.paths.split(",")) - {"tff", "fast"})
        if bad or args.to_accuracy:
            raise SystemExit(
                f"benchmark: --workload shakespeare runs --paths tff,fast only, not "
                f"{','.join(bad) or '--to-accuracy'}"
            )
        args.no_ceiling = True  # the ceiling is the MNIST CNN's
        model = build_model("char_lstm", (SEQUENCE_LENGTH,), VOCAB_SIZE)
        # A nominal round for the header; each path's figures use its rounds' mean examples.
        examples = 1
    else:
        model = _mnist_model(NOTEBOOK["model"])
        examples = (
            NOTEBOOK["clients_per_round"] * NOTEBOOK["examples_per_client"] * NOTEBOOK["epochs"]
        )
    per_example = functional_model(model).training_flops_per_example
    per_round = per_example * examples
    print(f"workload: {workload}")
    client_lr = f" (lr {args.client_sgd_lr})" if args.client_optimizer == "sgd" else ""
    optimizers = (
        f"client_optimizer={args.client_optimizer}{client_lr}, "
        f"server_optimizer={args.server_optimizer}"
        if args.workload == "notebook"
        else "client SGD 1.47, server SGD 1.0 (experiment=table2_shakespeare)"
    )
    print(
        f"fedlab paths (tff, fast): algorithm={args.algorithm}, {optimizers}"
        + (f", {' '.join(args.set)}" if args.set else "")
    )
    print(
        f"training FLOPs: {per_example / 1e6:.1f} MFLOP per example (3 x forward, 2 per MAC)"
        + (
            f", {per_round / 1e9:.1f} GFLOP per round of {examples} examples"
            if args.workload == "notebook"
            else "; a round's examples vary with its roles"
        )
    )
    cpu = cpu_info()
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu['model']} "
        f"({', '.join(cpu['vector_extensions']) or 'no vector extensions found'}); "
        f"load average now {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)"
    )
    report: dict = {
        "workload": workload,
        "fedlab": {
            "algorithm": args.algorithm,
            "client_optimizer": args.client_optimizer,
            "client_sgd_lr": args.client_sgd_lr if args.client_optimizer == "sgd" else None,
            "server_optimizer": args.server_optimizer,
            "overrides": args.set,
        },
        "flops_per_example": per_example,
        "flops_per_round": per_round,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_average_start": os.getloadavg(),
    }

    if args.to_accuracy:
        extra = [
            "--to-accuracy",
            "--target",
            str(args.target),
            "--max-rounds",
            str(args.max_rounds),
            "--eval-every",
            str(args.eval_every),
        ]
        result = run_child(args.engine, args, 100, extra)
        acc = result.get("to_accuracy") or {}
        print(
            f"{args.engine}: target {args.target} "
            + (
                f"reached at round {acc['rounds']}"
                if acc.get("rounds")
                else f"not reached in {args.max_rounds} rounds"
            )
            + f"; wall time {acc.get('wall_s', float('nan')):.0f} s "
            f"(start-up {result.get('startup_s', float('nan')):.1f} s more)"
        )
        report["to_accuracy"] = result
    else:
        rows = []
        ref_s = None
        for k in (int(c) for c in args.clients.split(",")):
            for path in args.paths.split(","):
                print(f"... {path}, K={k}", flush=True)
                result = run_child(path, args, k)
                if path == "reference" and result.get("round_s") and ref_s is None:
                    ref_s = statistics.median(result["round_s"])
                rows.append(result)
        rows = [summarize(r, per_round, examples, ref_s) for r in rows]
        report["paths"] = rows
        print()
        print_table(rows)
        for r in rows:
            if r.get("path") == "fast" and r.get("round_cpu_s"):
                print(
                    f"fast path, K={r['num_clients']}: "
                    f"{statistics.median(r['round_cpu_s']):.2f} CPU s/round in its process "
                    "(median; less moved by other work on the machine than wall time)"
                )
        if not args.no_ceiling:
            print("... FLOP ceiling", flush=True)
            ceiling = run_child("ceiling", args, 100)
            by_batch = ceiling.get("gflops_by_batch", {})
            if by_batch:
                best = max(by_batch.values())
                ceiling_s = per_round / best / 1e9
                report["ceiling"] = {
                    "gflops_by_batch": by_batch,
                    "best_gflops": best,
                    "s_per_round": ceiling_s,
                }
                print()
                print(
                    "FLOP ceiling (plain Keras training step of the CNN, Adam): "
                    + ", ".join(f"B={b}: {g:.1f}" for b, g in by_batch.items())
                    + f" GFLOP/s; best {best:.1f} GFLOP/s = {ceiling_s:.2f} s per round"
                )
                for r in rows:
                    if r.get("path") == "fast" and "median_s" in r:
                        r["vs_ceiling"] = r["median_s"] / ceiling_s
                        print(
                            f"fast path, K={r['num_clients']}: {r['vs_ceiling']:.2f} x the "
                            "ceiling's s/round"
                        )
    report["load_average_end"] = os.getloadavg()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    left = [
        pid
        for pid, (_, _, name) in _proc_table().items()
        if name == "worker_binary" and pid in _descendants_of_us()
    ]
    if left:
        raise SystemExit(f"benchmark: worker_binary {left} left running")


def _descendants_of_us() -> set[int]:
    return _tree(os.getpid()) - {os.getpid()}


if __name__ == "__main__":
    main()
