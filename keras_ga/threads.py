"""How TensorFlow's CPU runtime splits its threads for meta-training.

TensorFlow's default gives every op all cores (intra-op threads) and also
runs that many ops at once (inter-op threads). `MetaModel` runs the tasks
of a meta-batch concurrently (`tf.map_fn`, `parallel_tasks` at a time), and
the ops of one few-shot task are small (a 5-image convolution), so on a CPU
the cores are better spent running several tasks' ops side by side, one
thread each. The split changes how fast a step runs, not what it computes:
the results are the same. Measured speeds (`python -m
benchmarks.step_speed`) are in `benchmarks/RESULTS.md`, "Thread split".
"""

from __future__ import annotations

import os

from keras_ga import _checks


def set_cpu_threads(cores: int | None = None) -> None:
    """One thread per op and `cores` ops at once, for task-parallel training.

    Call it at the start of the program, before TensorFlow runs its first
    op (building a model or a dataset does): the runtime fixes its thread
    pools when it starts. Calling it again with the same `cores` later is
    harmless.

    Args:
        cores: how many ops may run at once (TensorFlow's inter-op
            threads); defaults to the CPUs this process may use.

    Raises:
        ValueError: if `cores` is not a positive int.
        RuntimeError: if TensorFlow's runtime already runs with another
            split.

    Example:

    First thing in a training script's `main`, before any model or dataset
    is built:

    ```python
    from absl import app

    import keras_ga


    def main(argv):
        keras_ga.set_cpu_threads()
        ...  # build the model and the datasets, train


    if __name__ == "__main__":
        app.run(main)
    ```
    """
    import tensorflow as tf

    if cores is None:
        cores = _usable_cpus()
    _checks.check_positive_int("cores", cores)
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(1)
        threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError as error:
        raise RuntimeError(
            "`keras_ga.set_cpu_threads` must be called before TensorFlow "
            "starts its runtime (before any op, model or dataset is built); "
            "the runtime already runs with intra-op threads "
            f"{threading.get_intra_op_parallelism_threads()} and inter-op "
            f"threads {threading.get_inter_op_parallelism_threads()} "
            "(0: TensorFlow's default). Received: cores="
            f"{cores!r}"
        ) from error


def _usable_cpus() -> int:
    """CPUs this process may run on (all CPUs where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
