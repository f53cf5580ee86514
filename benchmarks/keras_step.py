"""Times keras_ga's meta-training step for one workload, in this process.

The worker that `benchmarks/step_speed.py`, `agreement_cost.py`,
`scaling.py` and `formulations.py` start once per configuration (so that
each peak RSS is its own). It builds the `keras_ga.MetaModel` of a
workload of `benchmarks/workloads.py` on random inputs, times the first
meta-step (tracing and compilation), `--warmup` more and `--repeats`
timed ones, and prints one JSON line: the step times, the peak RSS before
building the model and at the end, and the task execution and XLA choice
the model resolved. Command, from the repository root:

    python -m benchmarks.keras_step --workload=omniglot_maml1 --repeats=3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import _timing  # noqa: E402

_timing.define_worker_flags()
_SET_CPU_THREADS = flags.DEFINE_bool(
    "set_cpu_threads",
    True,
    "Split the --threads cores with keras_ga.set_cpu_threads (one thread "
    "per op); else TensorFlow's default split (--threads threads per op).",
)
_WEIGHTING = flags.DEFINE_enum(
    "weighting", "uniform", ["uniform", "agreement"], "Task weighting."
)
_PARALLEL_TASKS = flags.DEFINE_integer(
    "parallel_tasks", None, "MetaModel's parallel_tasks (default: its own)."
)
_TASK_EXECUTION = flags.DEFINE_enum(
    "task_execution",
    "auto",
    ["auto", "map", "vectorized"],
    "MetaModel's task_execution.",
)
_JIT_COMPILE = flags.DEFINE_enum(
    "jit_compile",
    "fastest",
    ["fastest", "auto", "true", "false"],
    "compile's jit_compile; 'fastest': XLA for the MLP, none for conv4 (the "
    "faster of each on a CPU).",
)


def main(argv):
    del argv
    workload = _timing.workload_from_flags()
    from benchmarks import _keras

    _keras.configure_threads(flags.FLAGS.threads, _SET_CPU_THREADS.value)
    rss_base = _timing.peak_rss_mb()
    jit = {"true": True, "false": False}.get(
        _JIT_COMPILE.value, _JIT_COMPILE.value
    )
    model = _keras.build_model(
        workload,
        weighting=_WEIGHTING.value,
        parallel_tasks=_PARALLEL_TASKS.value,
        task_execution=_TASK_EXECUTION.value,
        jit_compile=jit,
    )
    result = _keras.time_train_step(
        model, workload, flags.FLAGS.repeats, flags.FLAGS.warmup
    )
    _timing.emit(
        {
            "impl": "keras_ga",
            **workload.describe(),
            **result,
            "rss_base_mb": rss_base,
            "rss_peak_mb": _timing.peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    app.run(main)
