"""The report of `benchmarks/accelerator.py`: its table and summaries.

Pure functions of the workers' JSON results (no flags, no framework), so
that `tests/accelerator_test.py` can check their arithmetic.
"""

from __future__ import annotations

from benchmarks import _report
from benchmarks import _timing

# Dense float32 peaks (no tensor cores), from NVIDIA's data sheets; XLA and
# PyTorch run float32 convolutions and matmuls as TF32 on tensor cores
# where allowed, so a fraction above this peak is possible in principle.
PEAK_FP32_TFLOPS = {"H200": 67.0, "H100": 67.0, "A100": 19.5, "L4": 30.3}

REFERENCE = "torch.func vmap"


def peak_tflops(device_name: str | None, given: float | None = None):
    """`given`, else the peak of the first `PEAK_FP32_TFLOPS` entry named
    in `device_name`, else None."""
    if given:
        return given
    for name, peak in PEAK_FP32_TFLOPS.items():
        if device_name and name in device_name:
            return peak
    return None


def device_name(results: dict) -> str | None:
    """The GPU's name, as the first torch worker that ran on it gave it."""
    for row in results.values():
        for r in row.values():
            if r.get("device_name"):
                return r["device_name"]
    return None


def table(results: dict, peak: float | None) -> str:
    """The Markdown table of the side-by-side steps (`peak` in TFLOP/s)."""
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


def training(result: dict) -> str:
    """One paragraph on the training run's result."""
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
