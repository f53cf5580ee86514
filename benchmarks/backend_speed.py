"""Meta-training step speed on Keras' TensorFlow and JAX backends, side by side.

Runs the workloads of `benchmarks/workloads.py` with keras_ga on TensorFlow
(`benchmarks/keras_step.py`, with `keras_ga.set_cpu_threads`), on JAX
(`benchmarks/jax_step.py`, tasks over `jax.vmap` and one after the other,
unrolled in the compiled step)
and with the PyTorch peers (learn2learn, torch.func; `benchmarks/
peer_step.py`), each configuration in a fresh process, in one run. Prints
meta-iterations/s, each row's rate over keras_ga on TensorFlow, the first
step (tracing and compilation) and the peak RSS. Command, from the
repository root (peers from `bash benchmarks/setup_peers.sh`):

    python -m benchmarks.backend_speed --meta_batch_size=8 \
        --output_dir=/tmp/backend_speed
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
_META_BATCH_SIZE = flags.DEFINE_integer(
    "meta_batch_size", None, "Overrides the workloads' meta-batch size."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per config.")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "Seconds per config.")
_PEERS = flags.DEFINE_list(
    "peers", ["l2l", "func_loop"], "PyTorch peers (peer_step's --impl)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Also write backend_speed.md and .json here."
)

TF = "keras_ga TF"
IMPLS = {
    TF: ("keras_step", {"set_cpu_threads": True}),
    "keras_ga JAX vmap": ("jax_step", {"task_execution": "vectorized"}),
    "keras_ga JAX map": ("jax_step", {"task_execution": "map"}),
}


def peers_python():
    """The peers' venv of `benchmarks/setup_peers.sh`, else this Python."""
    venv = os.path.join(_timing.REPO_ROOT, ".venv-peers", "bin", "python")
    return venv if os.path.exists(venv) else None


def run_workload(name: str) -> dict:
    common = dict(
        workload=name,
        repeats=_REPEATS.value,
        meta_batch_size=_META_BATCH_SIZE.value,
        timeout=_TIMEOUT.value,
    )
    row = {}
    for label, (module, extra) in IMPLS.items():
        row[label] = _timing.run_module(module, **common, **extra)
    for impl in _PEERS.value:
        row[impl] = _timing.run_module(
            "peer_step",
            python=peers_python(),
            impl=impl,
            threads=2,
            **common,
        )
    return row


def table(results: dict) -> str:
    header = [
        "workload",
        "impl",
        "it/s",
        "rate / keras_ga TF",
        "first step s",
        "peak RSS MB",
    ]
    rows = []
    for name, row in results.items():
        ours = _timing.step_seconds(row[TF])
        for impl, r in row.items():
            step = _timing.step_seconds(r)
            if step is None:
                rows.append([name, impl, f"failed: {r['error']}"])
                continue
            ratio = ours / step if ours else None
            rows.append(
                [
                    name,
                    impl,
                    f"{1 / step:.3g}",
                    f"{_report.fmt(ratio)}x",
                    f"{r['first_s']:.1f}",
                    f"{r['rss_peak_mb']:.0f}",
                ]
            )
    return _report.table(header, rows)


def main(argv):
    del argv
    started = time.time()
    results = {}
    for name in _WORKLOADS.value:
        results[name] = run_workload(name)
        print(name, "done", flush=True)
    notes = (
        f"Medians of {_REPEATS.value} steps after a warm-up step; "
        f"meta-batch {_META_BATCH_SIZE.value or 'of each workload'}. "
        "rate / keras_ga TF: the row's meta-iterations/s over keras_ga's on "
        "TensorFlow (above 1: faster)."
    )
    _report.finish(
        "backend_speed",
        [("Side by side", notes + "\n\n" + table(results))],
        {"workloads": results},
        _OUTPUT_DIR.value,
        started,
    )


if __name__ == "__main__":
    app.run(main)
