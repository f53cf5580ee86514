"""Meta-training speed of keras_ga beside learn2learn and torch.func.

Every configuration runs in a fresh subprocess (so that its peak RSS is its
own), on the same `--threads` cores; keras_ga and its peers alternate
configuration by configuration. PyTorch gets `--threads` threads per op.
keras_ga runs twice: with TensorFlow's default split of those cores
(`--threads` threads per op and as many ops at once; the "keras_ga" rows)
and with `keras_ga.set_cpu_threads` (one thread per op, `--threads` ops at
once; "keras_ga_split"), the split its examples use.
Random inputs of the workloads' shapes:

- Omniglot conv4 (64 filters, 28x28x1, BatchNorm, max-pool), 5-way 1-shot,
  15 queries per class, meta-batch N=32: MAML with 1 and 5 inner steps,
  first-order MAML (5 steps), Reptile (5 steps);
- sine MLP 1-64-64-1, MAML with 5 inner steps, 10 shots, N=10 and N=32.

The same work everywhere: uniform weighting, Adam outer optimizer, inner
SGD on the whole support set (Reptile too), the query loss after
adaptation computed by every algorithm (keras_ga reports it), no
pre-adaptation metrics.

Figures: meta-iterations/s (median over `--repeats` steps after a warm-up
step), the ratio keras_ga / peer, peak RSS, the first step (tracing and
compilation), the agreement weighting's cost, step time against N and the
inner steps (plot in benchmarks/figures/), and the achieved FLOP/s (matmul
and conv FLOPs of a step counted by torch.utils.flop_counter) against
the machine's measured matmul FLOP/s.

Commands, from the repository root (peers from benchmarks/setup_peers.sh):

    python benchmarks/speed.py --vmap_conv --out=/tmp/speed_peers.md
    python benchmarks/speed.py --sections=agreement,scaling
    python benchmarks/speed.py --sections=formulations

The first is the side-by-side run (about 15 minutes on the idle 2 cores,
most of it torch.func vmap on the conv net); the others measure the
agreement weighting, the scaling in N, k and `parallel_tasks` (with peak
RSS, and the figure benchmarks/figures/speed_scaling.png), and the
task-execution / XLA choices, all with `keras_ga.set_cpu_threads`.
Flags: `--sections`, `--workloads` (names in WORKLOADS), `--repeats`,
`--threads`, `--timeout` (per configuration), `--vmap_conv` (also the
slow torch.func vmap on Omniglot), `--peers_python`, `--out` (also write
the Markdown, and the raw results as JSON beside it).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_SECTIONS = flags.DEFINE_list(
    "sections",
    ["peers"],
    "Sections to run: peers, agreement, scaling, formulations.",
)
_WORKLOADS = flags.DEFINE_list(
    "workloads", None, "Peer-comparison workloads (default: all)."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per config.")
_THREADS = flags.DEFINE_integer("threads", 2, "Threads of TF and torch.")
_PEERS_PYTHON = flags.DEFINE_string(
    "peers_python", "/tmp/peers/bin/python", "Python of the peers' venv."
)
_OUT = flags.DEFINE_string("out", None, "Also write the tables here.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds per config.")
_VMAP_CONV = flags.DEFINE_bool(
    "vmap_conv",
    False,
    "Also run func_vmap on Omniglot (slow: 56 s a step, 4.8 GB at N=32).",
)
_WORKER = flags.DEFINE_string("worker", None, "Internal: run one config.")

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURES = os.path.join(HERE, "figures")
INNER_LR = {"omniglot": 0.4, "sine": 0.01}
# name: (workload, algo, inner steps, meta-batch size)
WORKLOADS = {
    "omniglot_maml1": ("omniglot", "maml", 1, 32),
    "omniglot_maml5": ("omniglot", "maml", 5, 32),
    "omniglot_fomaml5": ("omniglot", "fomaml", 5, 32),
    "omniglot_reptile5": ("omniglot", "reptile", 5, 32),
    "sine_maml5_n10": ("sine", "maml", 5, 10),
    "sine_maml5_n32": ("sine", "maml", 5, 32),
}
PEERS = ("l2l", "func_vmap", "func_loop")
# keras_ga's two thread splits of the same cores: TensorFlow's default
# (every op may use all cores, as many ops at once) and
# keras_ga.set_cpu_threads (one thread per op, as many ops at once).
OURS = {"keras_ga": "TF default", "keras_ga_split": "set_cpu_threads"}


# ----------------------------------------------------------------------
# The keras_ga worker (runs in its own process).


def _episode(workload, n):
    import numpy as np

    rng = np.random.default_rng(0)
    if workload == "omniglot":
        s, q, x = 5, 75, (28, 28, 1)
        return {
            "support_x": rng.random((n, s, *x), np.float32),
            "support_y": rng.integers(0, 5, (n, s)).astype(np.int32),
            "query_x": rng.random((n, q, *x), np.float32),
            "query_y": rng.integers(0, 5, (n, q)).astype(np.int32),
        }
    return {
        k: rng.random((n, 10, 1), np.float32)
        for k in ("support_x", "support_y", "query_x", "query_y")
    }


def _keras_model(config):
    import keras

    import keras_ga
    from keras_ga import models

    keras.utils.set_random_seed(0)
    if config["workload"] == "omniglot":
        base = models.conv4((28, 28, 1), 5, 64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        base = models.mlp(1, 1, (64, 64))
        loss = "mse"
    # Reptile: whole-support inner steps, as the peers take (MetaModel's
    # default would be ceil(S / k)-example sub-batches).
    support = 5 if config["workload"] == "omniglot" else 10
    batch = support if config["algo"] == "reptile" else None
    model = keras_ga.MetaModel(
        base,
        algo=config["algo"],
        inner_batch_size=batch,
        weighting=config.get("weighting", "uniform"),
        inner_steps=config["steps"],
        inner_learning_rate=INNER_LR[config["workload"]],
        pre_adaptation_metrics=False,
        parallel_tasks=config.get("parallel_tasks"),
        task_execution=config.get("task_execution", "auto"),
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        jit_compile=config.get("jit_compile", "auto"),
    )
    return model


def _set_tf_threads(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def run_keras_worker(config):
    """Times one keras_ga config; returns a dict (printed as JSON)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if config.get("split_threads"):
        import keras_ga

        keras_ga.set_cpu_threads(config["threads"])
    else:
        _set_tf_threads(config["threads"])
    if config.get("kind") == "matmul":
        return _matmul_flops()
    if config.get("kind") == "weighting":
        return _weighting_cost(config)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = _keras_model(config)
    batch = {
        k: tf.constant(v)
        for k, v in _episode(config["workload"], config["n"]).items()
    }
    model.make_train_function()
    iterator = iter([batch] * (config["repeats"] + 4))

    def step():
        start = time.perf_counter()
        float(model.train_function(iterator)["loss"])  # waits for the step
        return time.perf_counter() - start

    first = step()
    for _ in range(config.get("warmup", 1)):
        step()
    times = [step() for _ in range(config["repeats"])]
    return {
        "impl": "keras_ga",
        "first_s": first,
        "times_s": times,
        "rss_base_mb": rss0 / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "task_execution": model.resolved_task_execution,
        "jit_compile": bool(model.jit_compile),
    }


def _matmul_flops(size=2048, repeats=10):
    import tensorflow as tf

    a = tf.random.normal([size, size])
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        times.append(time.perf_counter() - start)
    return {"matmul_flops": 2 * size**3 / statistics.median(times)}


def _weighting_cost(config):
    """Seconds of weights + weighted sum, agreement and uniform, alone."""
    import tensorflow as tf

    import keras_ga
    from keras_ga import agreement

    model = _keras_model(config)
    # Compiled as the step is (XLA for the MLP), so that the weighting
    # costs here what it costs inside the step.
    jit = bool(model.jit_compile)
    n = config["n"]
    stacks = [
        tf.random.normal([n, *v.shape]) for v in model.base.trainable_variables
    ]
    result = {}
    for name, weigh in (
        ("agreement", keras_ga.AgreementWeighting()),
        ("uniform", keras_ga.UniformWeighting()),
    ):
        fn = tf.function(
            lambda s, w=weigh: agreement.weighted_sum(w(s), s),
            jit_compile=jit,
        )
        fn(stacks)[0].numpy()
        times = []
        for _ in range(100):
            start = time.perf_counter()
            fn(stacks)[0].numpy()
            times.append(time.perf_counter() - start)
        result[name + "_s"] = statistics.median(times)
    result["jit_compile"] = jit
    return result


# ----------------------------------------------------------------------
# The driver.


def _run(cmd):
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=_TIMEOUT.value,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {_TIMEOUT.value} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        errors = [ln for ln in text if "Error" in ln] or text[-1:]
        return {"error": errors[-1][:300]}
    return json.loads(lines[-1])


ROOT = os.path.dirname(HERE)


def keras_run(**config):
    config.setdefault("threads", _THREADS.value)
    config.setdefault("repeats", _REPEATS.value)
    cmd = [sys.executable, __file__, "--worker=" + json.dumps(config)]
    return _run(cmd)


def peer_run(impl, workload, algo, steps, n, flops=False):
    cmd = [
        _PEERS_PYTHON.value,
        os.path.join(HERE, "torch_reference.py"),
        f"--impl={impl}",
        f"--workload={workload}",
        f"--algo={algo}",
        f"--steps={steps}",
        f"--meta_batch={n}",
        f"--repeats={_REPEATS.value}",
        f"--threads={_THREADS.value}",
    ]
    return _run(cmd + (["--flops"] if flops else []))


def _step_s(result):
    return statistics.median(result["times_s"]) if "times_s" in result else None


def _fmt(value, spec=".2f", missing="n/a"):
    return missing if value is None else format(value, spec)


def _selected():
    names = _WORKLOADS.value or list(WORKLOADS)
    return {k: WORKLOADS[k] for k in names}


def section_peers(results):
    results["matmul"] = keras_run(kind="matmul")
    out = results.setdefault("peers", {})
    flops = results.setdefault("flops", {})
    for name, (workload, algo, steps, n) in _selected().items():
        row = out.setdefault(name, {})
        config = dict(workload=workload, algo=algo, steps=steps, n=n)
        row["keras_ga"] = keras_run(**config)
        row["keras_ga_split"] = keras_run(split_threads=True, **config)
        for impl in PEERS:
            if impl == "func_vmap" and workload == "omniglot":
                if not _VMAP_CONV.value:
                    row[impl] = {"error": "skipped (--vmap_conv)"}
                    continue
            count = impl == "func_loop"
            row[impl] = peer_run(impl, workload, algo, steps, n, flops=count)
        flops[name] = row["func_loop"].get("flops")
        print(name, json.dumps(row), file=sys.stderr, flush=True)


def section_agreement(results):
    out = results.setdefault("agreement", {})
    for name in ("omniglot_maml1", "sine_maml5_n32"):
        workload, algo, steps, n = WORKLOADS[name]
        config = dict(
            workload=workload,
            algo=algo,
            steps=steps,
            n=n,
            split_threads=True,
            # Enough steps that the median resolves a few percent of the
            # step (the MLP step is milliseconds).
            repeats=200 if workload == "sine" else 5,
        )
        row = {"isolated": keras_run(kind="weighting", **config)}
        for weighting in ("uniform", "agreement"):
            row[weighting] = keras_run(weighting=weighting, **config)
        out[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)


def section_scaling(results):
    out = results.setdefault("scaling", [])
    configs = [("n", n, dict(n=n, steps=1)) for n in (4, 8, 16, 32, 64)]
    configs += [("k", k, dict(n=32, steps=k)) for k in (1, 5, 10)]
    configs += [
        ("parallel_tasks", p, dict(n=32, steps=5, parallel_tasks=p))
        for p in (1, 4)
    ]
    for axis, value, config in configs:
        r = keras_run(
            workload="omniglot",
            algo="maml",
            repeats=2,
            split_threads=True,
            **config,
        )
        out.append({"axis": axis, "value": value, **config, **r})
        print(axis, value, json.dumps(r), file=sys.stderr, flush=True)


def section_formulations(results):
    out = results.setdefault("formulations", [])
    configs = [
        ("omniglot", "maml", 1, 8, execution, jit)
        for execution, jit in (("map", False), ("map", True))
    ] + [("omniglot", "fomaml", 1, 8, "vectorized", False)]
    configs += [
        ("sine", algo, 5, 32, execution, jit)
        for algo in ("maml", "reptile")
        for execution in ("map", "vectorized")
        for jit in (False, True)
    ]
    for workload, algo, steps, n, execution, jit in configs:
        r = keras_run(
            workload=workload,
            algo=algo,
            steps=steps,
            n=n,
            task_execution=execution,
            jit_compile=jit,
            split_threads=True,
        )
        row = dict(workload=workload, algo=algo, steps=steps, n=n)
        out.append({**row, "execution": execution, "jit": jit, **r})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)


# ----------------------------------------------------------------------
# Tables and figure.


def table_peers(results):
    flops = results.get("flops", {})
    peak = results.get("matmul", {}).get("matmul_flops")
    lines = [
        "| workload | impl | it/s | keras_ga / impl | keras_ga split / impl "
        "| first step s | peak RSS MB (over import) | GFLOP/s (% of matmul) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results.get("peers", {}).items():
        ours = [_step_s(row.get(k, {})) for k in OURS]
        for impl in (*OURS, *PEERS):
            r = row.get(impl, {"error": "not run"})
            step = _step_s(r)
            if step is None:
                lines.append(f"| {name} | {impl} | failed: {r['error']} |")
                continue
            ratios = [step / o if o else None for o in ours]
            rss = r["rss_peak_mb"]
            over = rss - r["rss_base_mb"]
            gflops = flops.get(name)
            rate = gflops / step / 1e9 if gflops else None
            pct = 100 * rate * 1e9 / peak if rate and peak else None
            lines.append(
                f"| {name} | {impl} | {1 / step:.3g} | "
                f"{_fmt(ratios[0])}x | {_fmt(ratios[1])}x | "
                f"{r['first_s']:.2f} | "
                f"{rss:.0f} ({over:.0f}) | {_fmt(rate, '.1f')} "
                f"({_fmt(pct, '.0f')}%) |"
            )
    return "\n".join(lines)


def table_targets(results):
    lines = [
        "| workload | keras_ga threads | keras_ga / l2l (>= 2) "
        "| keras_ga / faster torch.func (>= 1.5) | first step s (< 5) "
        "| peak RSS vs l2l (<=) |",
        "|---|---|---|---|---|---|",
    ]

    def mark(ok):
        return "met" if ok else "MISSED"

    for name, row in results.get("peers", {}).items():
        l2l = _step_s(row["l2l"])
        func = [_step_s(row[i]) for i in ("func_vmap", "func_loop")]
        func = min([f for f in func if f] or [None])
        for impl, threads in OURS.items():
            r = row.get(impl, {})
            ours = _step_s(r)
            if ours is None:
                continue
            first = r["first_s"]
            rss = r["rss_peak_mb"]
            cells = []
            for peer, target in ((l2l, 2.0), (func, 1.5)):
                ratio = peer / ours if peer else None
                cells.append(
                    "n/a"
                    if ratio is None
                    else f"{ratio:.2f}x {mark(ratio >= target)}"
                )
            l2l_rss = row["l2l"].get("rss_peak_mb")
            rss_cell = "n/a"
            if l2l_rss is not None:
                ours_over = rss - r["rss_base_mb"]
                l2l_over = l2l_rss - row["l2l"]["rss_base_mb"]
                rss_cell = (
                    f"{rss:.0f} vs {l2l_rss:.0f} MB {mark(rss <= l2l_rss)}; "
                    f"over import {ours_over:.0f} vs {l2l_over:.0f} MB "
                    f"{mark(ours_over <= l2l_over)}"
                )
            lines.append(
                f"| {name} | {threads} | {cells[0]} | {cells[1]} | "
                f"{first:.2f} {mark(first < 5)} | {rss_cell} |"
            )
    return "\n".join(lines)


def table_agreement(results):
    lines = [
        "| workload | uniform step s | agreement step s | difference "
        "| weighting alone: agreement / uniform ms | share of step |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.get("agreement", {}).items():
        uni, agr = _step_s(row["uniform"]), _step_s(row["agreement"])
        iso = row["isolated"]
        if uni is None or agr is None or "agreement_s" not in iso:
            lines.append(f"| {name} | failed |")
            continue
        extra = iso["agreement_s"] - iso["uniform_s"]
        lines.append(
            f"| {name} | {uni:.4f} | {agr:.4f} | {100 * (agr / uni - 1):+.1f}%"
            f" | {1e3 * iso['agreement_s']:.2f} / "
            f"{1e3 * iso['uniform_s']:.2f} | {100 * extra / uni:.2f}% |"
        )
    return "\n".join(lines)


def table_scaling(results):
    lines = [
        "| axis | value | N | k | parallel_tasks | step s | first step s "
        "| peak RSS MB (over import) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("scaling", []):
        step = _step_s(r)
        if step is None:
            lines.append(f"| {r['axis']} | {r['value']} | failed |")
            continue
        lines.append(
            f"| {r['axis']} | {r['value']} | {r['n']} | {r['steps']} | "
            f"{r.get('parallel_tasks') or 'default'} | {step:.3f} | "
            f"{r['first_s']:.2f} | {r['rss_peak_mb']:.0f} "
            f"({r['rss_peak_mb'] - r['rss_base_mb']:.0f}) |"
        )
    return "\n".join(lines)


def table_formulations(results):
    lines = [
        "| workload | algo | k | N | task_execution | jit_compile "
        "| step s | first step s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("formulations", []):
        head = (
            f"| {r['workload']} | {r['algo']} | {r['steps']} | {r['n']} | "
            f"{r['execution']} | {r['jit']} |"
        )
        step = _step_s(r)
        if step is None:
            lines.append(f"{head} failed: {r['error'][-120:]} | | |")
            continue
        lines.append(
            f"{head} {step:.4f} | {r['first_s']:.2f} | {r['rss_peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def plot_scaling(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results.get("scaling", []) if _step_s(r)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, axis, label in (
        (axes[0], "n", "meta-batch size N (k=1)"),
        (axes[1], "k", "inner steps k (N=32)"),
    ):
        pts = [(r["value"], _step_s(r)) for r in rows if r["axis"] == axis]
        if pts:
            ax.plot(*zip(*pts), "o-", label="step s")
            twin = ax.twinx()
            rss = [r["rss_peak_mb"] for r in rows if r["axis"] == axis]
            twin.plot([p[0] for p in pts], rss, "s--", color="tab:red")
            twin.set_ylabel("peak RSS MB", color="tab:red")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per meta-step")
    fig.suptitle("keras_ga MAML, Omniglot conv4 5-way 1-shot (2-core CPU)")
    fig.tight_layout()
    os.makedirs(FIGURES, exist_ok=True)
    path = os.path.join(FIGURES, "speed_scaling.png")
    fig.savefig(path, dpi=100)
    return path


def report(results):
    peak = results.get("matmul", {}).get("matmul_flops")
    parts = [
        f"Cores: {_THREADS.value} (torch threads; TF intra/inter op threads "
        f"{_THREADS.value}/{_THREADS.value} for keras_ga, 1/{_THREADS.value} "
        "for keras_ga_split). Repeats: "
        f"{_REPEATS.value} timed steps after 1 warm-up step. "
        f"Measured matmul (TF, 2048^2 float32): "
        f"{_fmt(peak and peak / 1e9, '.1f')} GFLOP/s.",
    ]
    tables = (
        ("Side by side", table_peers),
        ("Targets", table_targets),
        ("Cost of agreement weighting", table_agreement),
        ("Scaling (Omniglot conv4 MAML)", table_scaling),
        ("Formulations", table_formulations),
    )
    for title, fn in tables:
        body = fn(results)
        if body.count("\n") > 1:
            parts.append(f"### {title}\n\n{body}")
    return "\n\n".join(parts)


def main(argv):
    del argv
    if _WORKER.value:
        print(json.dumps(run_keras_worker(json.loads(_WORKER.value))))
        return
    start = time.time()
    results = {}
    sections = {
        "peers": section_peers,
        "agreement": section_agreement,
        "scaling": section_scaling,
        "formulations": section_formulations,
    }
    for name in _SECTIONS.value:
        sections[name](results)
    if results.get("scaling"):
        results["figure"] = plot_scaling(results)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start))
    text = report(results) + (
        f"\n\nRun started {stamp}, took {time.time() - start:.0f} s."
    )
    print(text)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write(text + "\n")
        with open(_OUT.value + ".json", "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
