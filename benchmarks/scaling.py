"""How keras_ga's meta-step grows with the meta-batch size N and steps k.

Omniglot conv4 MAML (`benchmarks/workloads.py`, 5-way 1-shot, 15 queries
per class) with `keras_ga.set_cpu_threads`, each configuration in a fresh
process (`benchmarks/keras_step.py`): N in `--meta_batch_sizes` with one
inner step; k in `--inner_steps` at N=32 (`--fixed_meta_batch_size`); and
`parallel_tasks` in `--parallel_tasks` at N=32, k=5. For each: the step
(median of `--repeats`), the first step (tracing and compilation) and the
peak RSS.
With `--output_dir`, also the figure `speed_scaling.png` (step time and
peak RSS against N and against k). Command, from the repository root:

    python -m benchmarks.scaling --output_dir=/tmp/scaling

(`benchmarks/figures/speed_scaling.png` is that figure.)
"""

import os
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _timing

_META_BATCH_SIZES = flags.DEFINE_list(
    "meta_batch_sizes", ["4", "8", "16", "32", "64"], "N at k=1."
)
_INNER_STEPS = flags.DEFINE_list(
    "inner_steps", ["1", "5", "10"], "k at N=--fixed_meta_batch_size."
)
_PARALLEL_TASKS = flags.DEFINE_list(
    "parallel_tasks", ["1", "4"], "parallel_tasks at k=5."
)
_FIXED_N = flags.DEFINE_integer(
    "fixed_meta_batch_size", 32, "N of the k and parallel_tasks configs."
)
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed steps per config.")
_THREADS = flags.DEFINE_integer("threads", 2, "Cores of TensorFlow.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds per config.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    None,
    "Also write scaling.md, scaling.json and speed_scaling.png here.",
)


def configs():
    """`(axis, value, keras_step flags)` of every configuration."""
    out = [
        ("N", int(n), dict(meta_batch_size=int(n), inner_steps=1))
        for n in _META_BATCH_SIZES.value
    ]
    out += [
        ("k", int(k), dict(meta_batch_size=_FIXED_N.value, inner_steps=int(k)))
        for k in _INNER_STEPS.value
    ]
    out += [
        (
            "parallel_tasks",
            int(p),
            dict(meta_batch_size=_FIXED_N.value, inner_steps=5),
        )
        for p in _PARALLEL_TASKS.value
    ]
    return out


def table(rows):
    header = [
        "axis",
        "value",
        "N",
        "k",
        "parallel_tasks",
        "step s",
        "first step s",
        "peak RSS MB (over import)",
    ]
    cells = []
    for r in rows:
        step = _timing.step_seconds(r)
        if step is None:
            cells.append([r["axis"], r["value"], f"failed: {r['error']}"])
            continue
        rss = r["rss_peak_mb"]
        cells.append(
            [
                r["axis"],
                r["value"],
                r["meta_batch_size"],
                r["inner_steps"],
                r.get("parallel_tasks") or "default",
                f"{step:.3f}",
                f"{r['first_s']:.2f}",
                f"{rss:.0f} ({rss - r['rss_base_mb']:.0f})",
            ]
        )
    return _report.table(header, cells)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, axis, label in (
        (axes[0], "N", "meta-batch size N (k=1)"),
        (axes[1], "k", f"inner steps k (N={_FIXED_N.value})"),
    ):
        done = [r for r in rows if r["axis"] == axis and "times_s" in r]
        if done:
            values = [r["value"] for r in done]
            ax.plot(values, [_timing.step_seconds(r) for r in done], "o-")
            twin = ax.twinx()
            rss = [r["rss_peak_mb"] for r in done]
            twin.plot(values, rss, "s--", color="tab:red")
            twin.set_ylabel("peak RSS MB", color="tab:red")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per meta-step")
    fig.suptitle(
        f"keras_ga MAML, Omniglot conv4 5-way 1-shot ({_THREADS.value} cores)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv):
    del argv
    started = time.time()
    rows = []
    for axis, value, config in configs():
        parallel = value if axis == "parallel_tasks" else None
        result = _timing.run_module(
            "keras_step",
            workload="omniglot_maml1",
            parallel_tasks=parallel,
            repeats=_REPEATS.value,
            threads=_THREADS.value,
            timeout=_TIMEOUT.value,
            **config,
        )
        rows.append(
            {"axis": axis, "value": value, "parallel_tasks": parallel}
            | config
            | result
        )
        print(axis, value, "done", flush=True)
    _report.finish(
        "scaling",
        [("Scaling (Omniglot conv4 MAML)", table(rows))],
        rows,
        _OUTPUT_DIR.value,
        started,
    )
    if _OUTPUT_DIR.value:
        plot(rows, os.path.join(_OUTPUT_DIR.value, "speed_scaling.png"))


if __name__ == "__main__":
    app.run(main)
