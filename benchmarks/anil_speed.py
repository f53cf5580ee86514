"""ANIL against full MAML: the meta-step of conv4 Omniglot, side by side.

`MetaModel(adapt_layers=["logits"])` adapts conv4's output layer alone
and runs the four conv blocks once per task (see `keras_ga.anil`);
full MAML adapts every layer and runs the whole network at every inner
step, with second derivatives through all of it. Both models are built in
this process from the same seed and timed in alternation, one meta-step
each in turn, on the same random meta-batch of the Omniglot 5-way 1-shot
workload (75 query images per task), so that both see the same machine
load; the report gives the median step of each and their ratio.
Command, from the repository root:

    python -m benchmarks.anil_speed --output_dir=benchmarks/results
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import _report  # noqa: E402
from benchmarks import workloads  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed meta-steps per model.")
_STEPS = flags.DEFINE_list("inner_steps", ["1", "5"], "Inner steps to time.")
_ALGOS = flags.DEFINE_list("algos", ["maml", "fomaml"], "Algorithms to time.")
_META_BATCH = flags.DEFINE_integer("meta_batch_size", 16, "Tasks per step.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder for anil_speed.md and .json."
)

VARIANTS = {"full": None, "ANIL (logits)": ["logits"]}


def main(argv):
    del argv
    started = time.time()
    from benchmarks import _keras

    _keras.configure_threads(2, True)
    rows, results = [], []
    for algo in _ALGOS.value:
        for steps in map(int, _STEPS.value):
            workload = workloads.get(
                "omniglot_maml1",
                algo=algo,
                inner_steps=steps,
                meta_batch_size=_META_BATCH.value,
            )
            steppers = {
                name: _keras.stepper(
                    _keras.build_model(workload, adapt_layers=layers),
                    workload,
                    _REPEATS.value + 1,
                )[0]
                for name, layers in VARIANTS.items()
            }
            times = _keras.alternate(steppers, _REPEATS.value)
            full, head = (statistics.median(times[n]) for n in VARIANTS)
            rows.append(
                [
                    algo,
                    steps,
                    f"{full * 1e3:.0f}",
                    f"{head * 1e3:.0f}",
                    f"{full / head:.2f}",
                ]
            )
            results.append(
                {
                    **workload.describe(),
                    "times_s": times,
                    "speedup": full / head,
                }
            )
    header = ["algo", "inner steps", "full ms", "ANIL ms", "full / ANIL"]
    section = (
        f"conv4 Omniglot 5-way 1-shot, meta-batch {_META_BATCH.value}, "
        "median meta-step",
        _report.table(header, rows),
    )
    _report.finish("anil_speed", [section], results, _OUTPUT_DIR.value, started)


if __name__ == "__main__":
    app.run(main)
