"""The machine a run or a benchmark ran on, named without TensorFlow.

`examples/train.py` records it with each run (with the GPUs TensorFlow
sees) and `benchmarks/_report.py` with each report. Benchmark workers
that have only PyTorch import the latter, so this module imports nothing
but the standard library (and `examples/__init__.py` nothing at all).
"""

from __future__ import annotations

import os
import platform


def cpu() -> str:
    """The CPU model and its logical cores: `"<model>, <n> logical cores"`.

    The model is the first `model name` of `/proc/cpuinfo`, else what
    `platform` reports.
    """
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln for ln in f if ln.startswith("model name")]
        if names:
            model = names[0].split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores"
