"""Meta-training step speed: keras_ga beside learn2learn and torch.func.

Runs the workloads of `benchmarks/workloads.py` (Omniglot conv4 MAML-1,
MAML-5, first-order MAML-5, Reptile-5; sine MLP MAML-5 at N=10 and N=32)
with keras_ga and its PyTorch peers, side by side in one run. Every
configuration runs in a fresh process (`benchmarks/keras_step.py`,
`benchmarks/peer_step.py`), so that its peak RSS is its own, on the same
`--threads` cores, and keras_ga and the peers alternate configuration by
configuration. keras_ga runs twice: with TensorFlow's default split of the
cores (`--threads` threads per op; "keras_ga (TF threads)") and with
`keras_ga.set_cpu_threads` (one thread per op, `--threads` ops at once;
"keras_ga"), the split its examples use. PyTorch gets `--threads` threads.

For each workload and implementation: meta-iterations/s (median of
`--repeats` steps after a warm-up step), the ratio of keras_ga's rate to
it under both thread splits, the first step (tracing and compilation),
the peak RSS (and its growth over the imports), and the achieved FLOP/s
(the matmul and conv FLOPs of a step, counted once by
`torch.utils.flop_counter`) as a share of the machine's measured matmul
rate. Command, from the repository root (peers from
`bash benchmarks/setup_peers.sh`):

    python -m benchmarks.step_speed --vmap_conv --output_dir=/tmp/step_speed

Without `--vmap_conv` the slow torch.func vmap on Omniglot is skipped.
`--peers_python` defaults to `.venv-peers/bin/python` when it exists, else
this interpreter; peers that cannot run appear as failed rows.
"""

import os
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _timing
from benchmarks import workloads

_WORKLOADS = flags.DEFINE_list(
    "workloads", list(workloads.WORKLOADS), "Workloads to run."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per config.")
_THREADS = flags.DEFINE_integer("threads", 2, "Cores of TF and torch.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds per config.")
_VMAP_CONV = flags.DEFINE_bool(
    "vmap_conv", False, "Also run torch.func vmap on Omniglot (slow)."
)
_PEERS_PYTHON = flags.DEFINE_string(
    "peers_python", None, "Python of the peers' environment."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Also write step_speed.md and step_speed.json here."
)

# Row label: keras_step's thread split.
KERAS_GA = {
    "keras_ga (TF threads)": {"set_cpu_threads": False},
    "keras_ga": {"set_cpu_threads": True},
}
PEERS = ("l2l", "func_vmap", "func_loop")


def peers_python():
    if _PEERS_PYTHON.value:
        return _PEERS_PYTHON.value
    venv = os.path.join(_timing.REPO_ROOT, ".venv-peers", "bin", "python")
    return venv if os.path.exists(venv) else None


def run_workload(name):
    """`{label: result}` of one workload, keras_ga first, then the peers."""
    common = dict(
        workload=name,
        repeats=_REPEATS.value,
        threads=_THREADS.value,
        timeout=_TIMEOUT.value,
    )
    row = {}
    for label, extra in KERAS_GA.items():
        row[label] = _timing.run_module("keras_step", **common, **extra)
    problem = workloads.WORKLOADS[name].problem
    for impl in PEERS:
        if impl == "func_vmap" and problem.network == "conv4":
            if not _VMAP_CONV.value:
                row[impl] = {"error": "skipped (--vmap_conv)"}
                continue
        row[impl] = _timing.run_module(
            "peer_step",
            python=peers_python(),
            impl=impl,
            flops=impl == "func_loop",
            **common,
        )
    return row


def table(results, matmul):
    header = [
        "workload",
        "impl",
        "it/s",
        *(f"{label} / impl" for label in KERAS_GA),
        "first step s",
        "peak RSS MB (over import)",
        "GFLOP/s (% of matmul)",
    ]
    rows = []
    for name, row in results.items():
        flops = row.get("func_loop", {}).get("flops")
        ours = [_timing.step_seconds(row[label]) for label in KERAS_GA]
        for impl, r in row.items():
            step = _timing.step_seconds(r)
            if step is None:
                rows.append([name, impl, f"failed: {r['error']}"])
                continue
            ratios = [step / o if o else None for o in ours]
            rate = flops / step if flops else None
            rss = r["rss_peak_mb"]
            rows.append(
                [
                    name,
                    impl,
                    f"{1 / step:.3g}",
                    *(f"{_report.fmt(x)}x" for x in ratios),
                    f"{r['first_s']:.2f}",
                    f"{rss:.0f} ({rss - r['rss_base_mb']:.0f})",
                    f"{_report.fmt(rate and rate / 1e9, '.1f')} "
                    f"({_report.fmt(rate and 100 * rate / matmul, '.0f')}%)",
                ]
            )
    return _report.table(header, rows)


def main(argv):
    del argv
    started = time.time()
    from benchmarks import _keras

    _keras.configure_threads(_THREADS.value, split=False)
    matmul = _keras.matmul_flops()
    results = {}
    for name in _WORKLOADS.value:
        results[name] = run_workload(name)
        print(name, "done", flush=True)
    notes = (
        f"{_THREADS.value} cores; medians of {_REPEATS.value} steps after a "
        "warm-up step. keras_ga / impl: keras_ga's it/s over impl's. "
        f"TF 2048x2048 float32 matmul: {matmul / 1e9:.1f} GFLOP/s."
    )
    _report.finish(
        "step_speed",
        [("Side by side", notes + "\n\n" + table(results, matmul))],
        {"matmul_flops": matmul, "workloads": results},
        _OUTPUT_DIR.value,
        started,
    )


if __name__ == "__main__":
    app.run(main)
