"""Second-order MAML's inner steps unrolled against a `tf.while_loop`.

`keras_ga.inner_loop` unrolls MAML's fixed number of inner steps when it
differentiates through them (the gradient of a `tf.while_loop` keeps the
steps' activations in accumulators of unknown rank, on which Grappler's
cost model logs an error at every trace). This builds the same conv4
Omniglot 5-way 1-shot MAML model (75 query images per task) twice in this
process, once with each form of the loop, and times them in alternation,
one meta-step each in turn, so that both see the same machine load; the
report gives the first step (tracing), the median step of each and their
ratio. Command, from the repository root:

    python -m benchmarks.unroll_speed --output_dir=benchmarks/results
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import _report  # noqa: E402
from benchmarks import workloads  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed meta-steps per model.")
_STEPS = flags.DEFINE_list("inner_steps", ["1", "5"], "Inner steps to time.")
_META_BATCH = flags.DEFINE_integer("meta_batch_size", 16, "Tasks per step.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder for unroll_speed.md and .json."
)

VARIANTS = {"tf.while_loop": False, "unrolled": True}


def main(argv):
    del argv
    started = time.time()
    from benchmarks import _keras
    from keras_ga import inner_loop

    _keras.configure_threads(2, True)
    rows, results = [], []
    for steps in map(int, _STEPS.value):
        workload = workloads.get(
            "omniglot_maml1",
            inner_steps=steps,
            meta_batch_size=_META_BATCH.value,
        )
        steppers, first = {}, {}
        for name, unroll in VARIANTS.items():
            # Read when the step is traced, in `stepper`.
            inner_loop._UNROLL_SECOND_ORDER = unroll
            steppers[name], first[name] = _keras.stepper(
                _keras.build_model(workload), workload, _REPEATS.value + 1
            )
        inner_loop._UNROLL_SECOND_ORDER = True
        times = _keras.alternate(steppers, _REPEATS.value)
        loop, unrolled = (statistics.median(times[n]) for n in VARIANTS)
        rows.append(
            [
                steps,
                *(f"{first[n]:.1f}" for n in VARIANTS),
                f"{loop * 1e3:.0f}",
                f"{unrolled * 1e3:.0f}",
                f"{loop / unrolled:.2f}",
            ]
        )
        results.append(
            {
                **workload.describe(),
                "first_s": first,
                "times_s": times,
                "loop_over_unrolled": loop / unrolled,
            }
        )
    header = [
        "inner steps",
        "first step s, loop",
        "first step s, unrolled",
        "loop ms",
        "unrolled ms",
        "loop / unrolled",
    ]
    section = (
        f"conv4 Omniglot 5-way 1-shot MAML, meta-batch {_META_BATCH.value}, "
        "median meta-step",
        _report.table(header, rows),
    )
    _report.finish(
        "unroll_speed", [section], results, _OUTPUT_DIR.value, started
    )


if __name__ == "__main__":
    app.run(main)
