"""Times keras_ga's meta-training step on Keras' JAX backend, in this process.

The JAX counterpart of `benchmarks/keras_step.py` (same workloads, same
JSON line), started once per configuration by `benchmarks/backend_speed.py`.
It sets `KERAS_BACKEND=jax` before Keras is imported, builds the
workload's `MetaModel` (compiled with `jax.jit`), and times the compiled
train function on one random meta-batch, threading the state as Keras'
JAX trainer does; on JAX's default device (a GPU where JAX has one).
`--flops` adds XLA's FLOP count of the step. Command, from the
repository root:

    python -m benchmarks.jax_step --workload=omniglot_maml1 --repeats=3
"""

import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import _timing  # noqa: E402

_timing.define_worker_flags()
_TASK_EXECUTION = flags.DEFINE_enum(
    "task_execution",
    "vectorized",
    ["map", "vectorized"],
    "MetaModel's task_execution: one task after the other (unrolled) or "
    "jax.vmap over the tasks.",
)
_WEIGHTING = flags.DEFINE_enum(
    "weighting", "uniform", ["uniform", "agreement"], "Task weighting."
)
_FLOPS = flags.DEFINE_bool(
    "flops", False, "Also report one step's FLOPs, XLA's cost analysis."
)


def time_train_step(model, workload, repeats, warmup=1) -> dict:
    """Times the compiled train function on one random meta-batch."""
    import numpy as np

    from benchmarks import workloads

    batch = {k: np.asarray(v) for k, v in workloads.episode(workload).items()}
    model.make_train_function()
    iterator = iter([batch] * (repeats + warmup + 1))
    state = [
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    ]

    flops = None
    if _FLOPS.value:
        import jax

        compiled = jax.jit(model.train_step).lower(state, batch).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):  # older JAX: one per device
            analysis = analysis[0]
        flops = float(analysis.get("flops", 0.0)) or None

    def step():
        nonlocal state
        logs, state = model.train_function(state, iterator)
        float(logs["loss"])  # waits for the step

    first, times = _timing.time_steps(step, repeats, warmup)
    return {
        "first_s": first,
        "times_s": times,
        "flops": flops,
        "task_execution": model.resolved_task_execution,
        "jit_compile": bool(model.jit_compile),
    }


def main(argv):
    del argv
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    workload = _timing.workload_from_flags()
    from benchmarks import _keras

    rss_base = _timing.peak_rss_mb()
    model = _keras.build_model(
        workload,
        weighting=_WEIGHTING.value,
        task_execution=_TASK_EXECUTION.value,
        jit_compile="auto",
    )
    result = time_train_step(
        model, workload, flags.FLAGS.repeats, flags.FLAGS.warmup
    )
    _timing.emit(
        {
            "impl": "keras_ga (JAX)",
            **workload.describe(),
            **result,
            "rss_base_mb": rss_base,
            "rss_peak_mb": _timing.peak_rss_mb(),
            "device": _device(),
        }
    )


def _device() -> str:
    """JAX's first device, as `platform: kind`."""
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


if __name__ == "__main__":
    app.run(main)
