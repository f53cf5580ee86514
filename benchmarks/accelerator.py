"""keras_ga on JAX against torch.func on one accelerator, side by side.

The driver of the accelerator script (`benchmarks/accelerator_run.sh`),
for a GPU machine with JAX and PyTorch but no TensorFlow. In one run, each
configuration in a fresh process:

1. The workloads of `benchmarks/workloads.py` (Omniglot conv4 MAML-1,
   MAML-5, first-order MAML-5, Reptile-5; sine MLP MAML-5): keras_ga on
   Keras' JAX backend with the tasks over `jax.vmap` and one after the
   other (`benchmarks/jax_step.py`), and the torch.func reference with
   `vmap` and with a loop over tasks (`benchmarks/peer_step.py
   --device=cuda`). Reported: meta-steps per second, the rate over
   torch.func `vmap`, the step's FLOPs (XLA's cost analysis for keras_ga,
   PyTorch's matmul and convolution count for torch.func), the FLOP rate
   it reaches and that rate as a fraction of the GPU's peak
   (`--peak_tflops`).
2. A short Omniglot 5-way 1-shot MAML training run on JAX
   (`benchmarks/jax_omniglot_run.py`): accuracy on 600 test tasks, wall
   time, meta-steps per second.

On a CPU (`--device=cpu`) the same run checks the script. Command, from
the repository root:

    python -m benchmarks.accelerator --device=cuda --output_dir=/tmp/gpu
"""

import sys
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _timing
from benchmarks import accelerator_report as report
from benchmarks import workloads

_WORKLOADS = flags.DEFINE_list(
    "workloads", list(workloads.WORKLOADS), "Workloads to run."
)
_META_BATCH_SIZE = flags.DEFINE_integer(
    "meta_batch_size", None, "Overrides the workloads' meta-batch size."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per config.")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "Seconds per config.")
_DEVICE = flags.DEFINE_enum(
    "device", "cuda", ["cuda", "cpu"], "Where the steps run."
)
_PEAK_TFLOPS = flags.DEFINE_float(
    "peak_tflops",
    None,
    "The device's peak float32 rate in TFLOP/s, for the fraction of peak; "
    "default: looked up from the GPU's name "
    "(accelerator_report.PEAK_FP32_TFLOPS).",
)
_TRAIN_ITERATIONS = flags.DEFINE_integer(
    "train_iterations", 2000, "Meta-steps of the training run (0: none)."
)
_EVAL_TASKS = flags.DEFINE_integer(
    "eval_tasks", 600, "Test tasks of the training run."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Also write accelerator.md and .json here."
)

REFERENCE = report.REFERENCE
IMPLS = {
    "keras_ga JAX vmap": (
        "jax_step",
        {"task_execution": "vectorized", "flops": True},
    ),
    "keras_ga JAX map": ("jax_step", {"task_execution": "map", "flops": True}),
    REFERENCE: ("peer_step", {"impl": "func_vmap", "flops": True}),
    "torch.func loop": ("peer_step", {"impl": "func_loop", "flops": True}),
}


def run_workload(name: str) -> dict:
    row = {}
    for label, (module, extra) in IMPLS.items():
        device = {"device": _DEVICE.value} if module == "peer_step" else {}
        row[label] = _timing.run_module(
            module,
            python=sys.executable,
            workload=name,
            repeats=_REPEATS.value,
            meta_batch_size=_META_BATCH_SIZE.value,
            timeout=_TIMEOUT.value,
            **device,
            **extra,
        )
    return row


def main(argv):
    del argv
    started = time.time()
    results = {}
    for name in _WORKLOADS.value:
        results[name] = run_workload(name)
        print(name, "done", flush=True)
    name = report.device_name(results)
    peak = report.peak_tflops(name, _PEAK_TFLOPS.value)
    notes = (
        f"Device: {name or _DEVICE.value}; peak float32 rate "
        f"{_report.fmt(peak, '.3g')} TFLOP/s. Medians of {_REPEATS.value} "
        "steps after a warm-up step; meta-batch "
        f"{_META_BATCH_SIZE.value or 'of each workload'}. rate / "
        f"{REFERENCE}: the row's meta-steps/s over torch.func vmap's (above "
        "1: faster). FLOPs: XLA's cost analysis of keras_ga's compiled step; "
        "PyTorch's count of matmuls and convolutions for torch.func (so the "
        "two columns count slightly different things)."
    )
    sections = [
        ("Steps side by side", notes + "\n\n" + report.table(results, peak))
    ]
    training = None
    if _TRAIN_ITERATIONS.value:
        training = _timing.run_module(
            "jax_omniglot_run",
            python=sys.executable,
            iterations=_TRAIN_ITERATIONS.value,
            eval_tasks=_EVAL_TASKS.value,
            task_execution="vectorized",
            timeout=3 * _TIMEOUT.value,
        )
        sections.append(
            ("Omniglot 5-way 1-shot MAML run", report.training(training))
        )
    _report.finish(
        "accelerator",
        sections,
        {"workloads": results, "training": training, "peak_tflops": peak},
        _OUTPUT_DIR.value,
        started,
    )


if __name__ == "__main__":
    app.run(main)
