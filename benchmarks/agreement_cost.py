"""The cost of gradient-agreement weighting, alone and in the whole step.

For each workload (by default Omniglot conv4 MAML-1 and the sine MLP
MAML-5 at N=32), with `keras_ga.set_cpu_threads`:

- "weighting alone": the task weights and the weighted sum of random
  `[N, ...]` per-task updates, agreement and uniform, each in its own
  `tf.function` compiled as the workload's step is (XLA for the MLP, not
  for the conv net), median of `--calls` calls, in this process;
- the whole meta-step with uniform and with agreement weighting, each in
  a fresh process (`benchmarks/keras_step.py`).

"Share of step" is the weighting's extra time over uniform weighting,
alone, divided by the uniform step. Command, from the repository root:

    python -m benchmarks.agreement_cost --output_dir=/tmp/agreement_cost
"""

import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _timing
from benchmarks import workloads

_WORKLOADS = flags.DEFINE_list(
    "workloads", ["omniglot_maml1", "sine_maml5_n32"], "Workloads to run."
)
_REPEATS = flags.DEFINE_integer(
    "repeats",
    None,
    "Timed steps per process; default 5 for conv4 and 200 for the MLP "
    "(enough that the median resolves a few percent of a short step).",
)
_CALLS = flags.DEFINE_integer("calls", 100, "Timed calls of the weighting.")
_THREADS = flags.DEFINE_integer("threads", 2, "Cores of TensorFlow.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds per process.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Also write agreement_cost.md and .json here."
)


def measure(name, weighting_seconds):
    conv = workloads.WORKLOADS[name].problem.network == "conv4"
    repeats = _REPEATS.value or (5 if conv else 200)
    row = {"alone": weighting_seconds(workloads.get(name), _CALLS.value)}
    for weighting in ("uniform", "agreement"):
        row[weighting] = _timing.run_module(
            "keras_step",
            workload=name,
            weighting=weighting,
            repeats=repeats,
            threads=_THREADS.value,
            timeout=_TIMEOUT.value,
        )
    return row


def table(results):
    header = [
        "workload",
        "uniform step s",
        "agreement step s",
        "difference",
        "weighting alone: agreement / uniform ms",
        "share of step",
    ]
    rows = []
    for name, row in results.items():
        uni = _timing.step_seconds(row["uniform"])
        agr = _timing.step_seconds(row["agreement"])
        if uni is None or agr is None:
            error = row["uniform"].get("error") or row["agreement"]["error"]
            rows.append([name, f"failed: {error}"])
            continue
        alone = row["alone"]
        extra = alone["agreement_s"] - alone["uniform_s"]
        rows.append(
            [
                name,
                f"{uni:.4f}",
                f"{agr:.4f}",
                f"{100 * (agr / uni - 1):+.1f}%",
                f"{1e3 * alone['agreement_s']:.2f} / "
                f"{1e3 * alone['uniform_s']:.2f}",
                f"{100 * extra / uni:.2f}%",
            ]
        )
    return _report.table(header, rows)


def main(argv):
    del argv
    started = time.time()
    from benchmarks import _keras

    _keras.configure_threads(_THREADS.value, split=True)
    results = {
        name: measure(name, _keras.weighting_seconds)
        for name in _WORKLOADS.value
    }
    _report.finish(
        "agreement_cost",
        [("Cost of agreement weighting", table(results))],
        results,
        _OUTPUT_DIR.value,
        started,
    )


if __name__ == "__main__":
    app.run(main)
