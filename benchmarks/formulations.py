"""Task execution and XLA: how each way of running the step compares.

`MetaModel(task_execution=...)` runs the per-task step mapped over tasks
("map") or vectorized over the task axis ("vectorized"), and
`compile(jit_compile=...)` compiles it with XLA or not. This times each
combination, with `keras_ga.set_cpu_threads`, each in a fresh process
(`benchmarks/keras_step.py`): Omniglot conv4 at N=8, k=1 (MAML mapped,
with and without XLA; first-order MAML vectorized) and the sine MLP at
N=32, k=5 (MAML and Reptile, every combination). Combinations that fail
are reported with their error. Command, from the repository root:

    python -m benchmarks.formulations --timeout=150 \
        --output_dir=/tmp/formulations
"""

import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _timing
from benchmarks import workloads

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per config.")
_THREADS = flags.DEFINE_integer("threads", 2, "Cores of TensorFlow.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds per config.")
_PROBLEMS = flags.DEFINE_list(
    "problems", ["omniglot", "sine"], "Problems to run: omniglot, sine."
)
flags.register_validator(
    "problems",
    lambda names: set(names) <= {"omniglot", "sine"},
    "--problems must name omniglot and/or sine.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Also write formulations.md and .json here."
)

# (workload, algo, inner steps, N, task_execution, jit_compile)
CONFIGS = (
    ("omniglot_maml1", "maml", 1, 8, "map", "false"),
    ("omniglot_maml1", "maml", 1, 8, "map", "true"),
    ("omniglot_maml1", "fomaml", 1, 8, "vectorized", "false"),
) + tuple(
    ("sine_maml5_n32", algo, 5, 32, execution, jit)
    for algo in ("maml", "reptile")
    for execution in ("map", "vectorized")
    for jit in ("false", "true")
)


def table(rows):
    header = [
        "workload",
        "algo",
        "k",
        "N",
        "task_execution",
        "jit_compile",
        "step s",
        "first step s",
        "peak RSS MB",
    ]
    cells = []
    for r in rows:
        head = [
            r["workload"],
            r["algo"],
            r["inner_steps"],
            r["meta_batch_size"],
            r["task_execution"],
            r["jit_compile"],
        ]
        step = _timing.step_seconds(r)
        if step is None:
            cells.append([*head, f"failed: {r['error'][-120:]}", "", ""])
            continue
        cells.append(
            [
                *head,
                f"{step:.4f}",
                f"{r['first_s']:.2f}",
                f"{r['rss_peak_mb']:.0f}",
            ]
        )
    return _report.table(header, cells)


def main(argv):
    del argv
    started = time.time()
    rows = []
    for name, algo, steps, n, execution, jit in CONFIGS:
        if workloads.WORKLOADS[name].problem.name not in _PROBLEMS.value:
            continue
        config = dict(
            workload=name,
            algo=algo,
            inner_steps=steps,
            meta_batch_size=n,
            task_execution=execution,
            jit_compile=jit,
        )
        result = _timing.run_module(
            "keras_step",
            repeats=_REPEATS.value,
            threads=_THREADS.value,
            timeout=_TIMEOUT.value,
            **config,
        )
        rows.append(config | result)
        print(" ".join(map(str, config.values())), "done", flush=True)
    _report.finish(
        "formulations",
        [("Formulations", table(rows))],
        rows,
        _OUTPUT_DIR.value,
        started,
    )


if __name__ == "__main__":
    app.run(main)
