"""keras_ga's side of the speed benchmarks: the workloads as MetaModels.

Builds a compiled `keras_ga.MetaModel` for a workload of
`benchmarks/workloads.py` and times its meta-training step; also the two
in-process measurements the drivers make (the machine's matmul rate and
the task weighting alone). Only keras_ga's public API.
"""

from __future__ import annotations

import statistics
import time

import keras

import keras_ga
from benchmarks import _timing
from benchmarks import workloads
from keras_ga._optional import tensorflow as tf


def configure_threads(threads: int, split: bool) -> None:
    """Sets TensorFlow's CPU threads; call before TensorFlow runs an op.

    Args:
        threads: cores to use.
        split: `keras_ga.set_cpu_threads(threads)` (one thread per op,
            `threads` ops at once) if True, else TensorFlow's default split
            of the same cores (`threads` threads per op and `threads` ops
            at once).
    """
    if split:
        keras_ga.set_cpu_threads(threads)
    else:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def base_model(problem: workloads.Problem) -> keras.Model:
    """The problem's network: `keras_ga.conv4` or `keras_ga.mlp`."""
    if problem.network == "conv4":
        return keras_ga.conv4(
            problem.input_shape, problem.outputs, problem.width
        )
    hidden = (problem.width,) * workloads.MLP_DEPTH
    return keras_ga.mlp(problem.input_shape[0], problem.outputs, hidden)


def build_model(
    workload: workloads.Workload,
    *,
    weighting="uniform",
    parallel_tasks=None,
    task_execution="auto",
    jit_compile="fastest",
    adapt_layers=None,
) -> keras_ga.MetaModel:
    """A compiled MetaModel of the workload (seeded, so repeatable).

    `adapt_layers` is MetaModel's (ANIL); `jit_compile="fastest"` is XLA for
    the MLP and none for conv4, the faster choice of each on a CPU
    (RESULTS.md, "Task execution and XLA"); the other arguments are the
    MetaModel's and `compile`'s of the same names.
    """
    problem = workload.problem
    if jit_compile == "fastest":
        jit_compile = problem.network == "mlp"
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(
        base_model(problem),
        algo=workload.algo,
        # Whole-support inner steps for Reptile too, as the peers take them
        # (MetaModel's default is ceil(S / k)-example sub-batches).
        inner_batch_size=problem.support,
        weighting=weighting,
        inner_steps=workload.inner_steps,
        inner_learning_rate=problem.inner_learning_rate,
        pre_adaptation_metrics=False,
        parallel_tasks=parallel_tasks,
        task_execution=task_execution,
        adapt_layers=adapt_layers,
    )
    if problem.classification:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss = "mse"
    model.compile(
        optimizer=keras.optimizers.Adam(workloads.OUTER_LEARNING_RATE),
        loss=loss,
        jit_compile=jit_compile,
    )
    return model


def time_train_step(model, workload, repeats, warmup=1) -> dict:
    """Times the model's meta-training step on a random meta-batch."""
    batch = {k: tf.constant(v) for k, v in workloads.episode(workload).items()}
    model.make_train_function()
    iterator = iter([batch] * (repeats + warmup + 1))

    def step():
        float(model.train_function(iterator)["loss"])  # waits for the step

    first, times = _timing.time_steps(step, repeats, warmup)
    return {
        "first_s": first,
        "times_s": times,
        "task_execution": model.resolved_task_execution,
        "jit_compile": bool(model.jit_compile),
    }


def stepper(model, workload, calls):
    """A function running one meta-step of `model`, `calls` times at most.

    Runs it once (tracing) and returns it with the seconds that took.
    """
    batch = {k: tf.constant(v) for k, v in workloads.episode(workload).items()}
    model.make_train_function()
    # One iterator for every call: a new Python iterator per call would
    # retrace the step function.
    iterator = iter([batch] * calls)

    def step():
        float(model.train_function(iterator)["loss"])  # waits for the step

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def alternate(steppers: dict, repeats: int) -> dict:
    """Times each stepper `repeats` times, one step of each in turn.

    Taking turns, the steppers see the same machine load. Returns the
    seconds of each call, per stepper name.
    """
    times = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def median_call_seconds(fn, args, calls) -> float:
    """Median seconds of `fn(*args)` over `calls` calls, after one call."""
    fn(*args)[0].numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(*args)[0].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(size=2048, calls=10) -> float:
    """FLOP/s of a `size`x`size` float32 matmul in a `tf.function`."""
    a = tf.random.normal([size, size])
    matmul = tf.function(lambda x: [tf.matmul(x, x)])
    return 2 * size**3 / median_call_seconds(matmul, (a,), calls)


def weighting_seconds(workload, calls=100) -> dict:
    """Seconds of the task weights and the weighted sum, alone.

    For agreement and uniform weighting, on random per-task updates
    stacked `[N, ...]` for each of the workload's trainable variables, in
    a `tf.function` compiled as the workload's step is (XLA where
    `compile(jit_compile="auto")` picks it), so that the weighting costs
    here what it costs inside the step.
    """
    model = build_model(workload)
    jit = bool(model.jit_compile)
    n = workload.meta_batch_size
    stacks = [tf.random.normal([n, *v.shape]) for v in model.trainable_weights]
    result = {"jit_compile": jit}
    for name, weigh in (
        ("agreement", keras_ga.AgreementWeighting()),
        ("uniform", keras_ga.UniformWeighting()),
    ):

        def weighted_sum(s, weigh=weigh):
            weights = weigh(s)
            return [tf.tensordot(weights, x, axes=1) for x in s]

        fn = tf.function(weighted_sum, jit_compile=jit)
        result[name + "_s"] = median_call_seconds(fn, (stacks,), calls)
    return result
