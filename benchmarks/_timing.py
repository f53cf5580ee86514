"""Timing one configuration, in this process or in a worker process.

A worker (`benchmarks/keras_step.py`, `benchmarks/peer_step.py`) times one
configuration and prints its result as one JSON line; `run_module` starts
one and returns that result, so that every configuration's peak RSS is its
own. Standard library and absl only: the PyTorch peers' environment
imports it too.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

from benchmarks import workloads

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_steps(step, repeats, warmup=1, budget_s=None):
    """Times `step()`: the first call, `warmup` untimed calls, `repeats`.

    Args:
        step: a function that returns once its work is done.
        repeats: timed calls after the warm-up.
        warmup: untimed calls after the first.
        budget_s: when the first call took longer, skip the warm-up and
            time one call (keeps slow configurations within a run's time).

    Returns:
        `(first call seconds, list of timed call seconds)`.
    """
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    if budget_s is not None and first > budget_s:
        warmup, repeats = 0, 1
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return first, times


def peak_rss_mb() -> float:
    """This process's peak resident set size, MB.

    On Linux, the high-water mark of this program's own memory (`VmHWM`):
    `ru_maxrss` would also count the parent's memory at the fork that
    started this process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_seconds(result: dict) -> float | None:
    """The median timed step of a worker's result, None if it failed."""
    times = result.get("times_s")
    return statistics.median(times) if times else None


# ----------------------------------------------------------------------
# The worker side: flags every worker shares, and its one line of output.


def define_worker_flags() -> None:
    """Defines the flags that select and time one workload."""
    flags.DEFINE_enum(
        "workload",
        None,
        list(workloads.WORKLOADS),
        "Workload of benchmarks/workloads.py.",
    )
    flags.DEFINE_enum(
        "algo", None, list(workloads.ALGOS), "Overrides the workload's algo."
    )
    flags.DEFINE_integer(
        "inner_steps", None, "Overrides the workload's inner steps."
    )
    flags.DEFINE_integer(
        "meta_batch_size", None, "Overrides the workload's meta-batch size N."
    )
    flags.DEFINE_integer("repeats", 3, "Timed meta-steps.")
    flags.DEFINE_integer("warmup", 1, "Untimed meta-steps after the first.")
    flags.DEFINE_integer("threads", 2, "CPU threads of the framework.")
    flags.mark_flag_as_required("workload")


def workload_from_flags() -> workloads.Workload:
    """The workload that the flags of `define_worker_flags` select."""
    values = flags.FLAGS
    return workloads.get(
        values.workload,
        algo=values.algo,
        inner_steps=values.inner_steps,
        meta_batch_size=values.meta_batch_size,
    )


def emit(result: dict) -> None:
    """Prints a worker's result as the JSON line `run_module` reads."""
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------
# The driver side.


def run_module(module, *, python=None, timeout=300, **flag_values) -> dict:
    """Runs `python -m benchmarks.<module>` and returns its JSON result.

    Args:
        module: the worker's module name in `benchmarks`.
        python: the interpreter; the current one when None.
        timeout: seconds before the worker is stopped.
        **flag_values: the worker's flags; None values are left out, and
            booleans pass as `--name` / `--noname`.

    Returns:
        The worker's result, or `{"error": message}` when it failed or ran
        out of time.
    """
    cmd = [python or sys.executable, "-m", f"benchmarks.{module}"]
    for name, value in flag_values.items():
        if isinstance(value, bool):
            cmd.append(f"--{name}" if value else f"--no{name}")
        elif value is not None:
            cmd.append(f"--{name}={value}")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        text = (proc.stderr or proc.stdout).strip().splitlines() or ["?"]
        errors = [ln for ln in text if "Error" in ln] or text[-1:]
        return {"error": errors[-1][:300]}
    return json.loads(lines[-1])
