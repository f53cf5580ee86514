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
    "default: looked up from the GPU's name (PEAK_FP32_TFLOPS).",
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

# Dense float32 peaks (no tensor cores), from NVIDIA's data sheets; XLA and
# PyTorch run float32 convolutions and matmuls as TF32 on tensor cores
# where allowed, so a fraction above this peak is possible in principle.
PEAK_FP32_TFLOPS = {"H200": 67.0, "H100": 67.0, "A100": 19.5, "L4": 30.3}

REFERENCE = "torch.func vmap"
IMPLS = {
    "keras_ga JAX vmap": (
        "jax_step",
        {"task_execution": "vectorized", "flops": True},
    ),
    "keras_ga JAX map": ("jax_step", {"task_execution": "map", "flops": True}),
    REFERENCE: ("peer_step", {"impl": "func_vmap", "flops": True}),
    "torch.func loop": ("peer_step", {"impl": "func_loop", "flops": True}),
}


def peak_tflops(device_name: str | None, given: float | None = None):
    """`given`, else the peak of the first `PEAK_FP32_TFLOPS` entry named
    in `device_name`, else None."""
    if given:
        return given
    for name, peak in PEAK_FP32_TFLOPS.items():
        if device_name and name in device_name:
            return peak
    return None


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


def table(results: dict, peak: float | None) -> str:
    header = [
        "workload",
        "impl",
        "it/s",
        f"rate / {REFERENCE}",
        "GFLOP per step",
        "TFLOP/s",
        "of peak",
        "first step s",
    ]
    rows = []
    for name, row in results.items():
        reference = _timing.step_seconds(row[REFERENCE])
        for impl, r in row.items():
            step = _timing.step_seconds(r)
            if step is None:
                rows.append([name, impl, f"failed: {r['error']}"])
                continue
            flops = r.get("flops")
            rate = flops / step / 1e12 if flops else None
            rows.append(
                [
                    name,
                    impl,
                    f"{1 / step:.3g}",
                    f"{_report.fmt(reference / step if reference else None)}x",
                    _report.fmt(flops / 1e9 if flops else None, ".3g"),
                    _report.fmt(rate, ".3g"),
                    f"{100 * rate / peak:.2g}%" if rate and peak else "n/a",
                    f"{r['first_s']:.1f}",
                ]
            )
    return _report.table(header, rows)


def device_name(results: dict) -> str | None:
    for row in results.values():
        for r in row.values():
            if r.get("device_name"):
                return r["device_name"]
    return None


def main(argv):
    del argv
    started = time.time()
    results = {}
    for name in _WORKLOADS.value:
        results[name] = run_workload(name)
        print(name, "done", flush=True)
    name = device_name(results)
    peak = peak_tflops(name, _PEAK_TFLOPS.value)
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
    sections = [("Steps side by side", notes + "\n\n" + table(results, peak))]
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
        sections.append(("Omniglot 5-way 1-shot MAML run", _training(training)))
    _report.finish(
        "accelerator",
        sections,
        {"workloads": results, "training": training, "peak_tflops": peak},
        _OUTPUT_DIR.value,
        started,
    )


def _training(result: dict) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    rate = result["steps_per_s_after_first_epoch"]
    return (
        f"{result['meta_steps']} meta-steps x {result['meta_batch_size']} "
        f"tasks ({result['task_execution']}) on {result['device']}: "
        f"{100 * result['accuracy']:.2f} +- {100 * result['ci95']:.2f}% on "
        f"{result['test_tasks']} test tasks; training {result['train_s']:.0f}"
        f" s, {_report.fmt(rate, '.3g')} meta-steps/s after the first epoch."
    )


if __name__ == "__main__":
    app.run(main)
