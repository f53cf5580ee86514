"""A small MetaModel, its data, and a multi-worker training entry point.

`distribute_test.py` imports `build` and `dataset`; run as a script under
`TF_CONFIG`, this module is one worker of a `MultiWorkerMirroredStrategy`:

    TF_CONFIG=... python -m tests.distribute_worker ALGO TASKS STEPS OUT.npz

trains `STEPS` meta-batches of `TASKS` tasks with `fit` and saves the final
base-model weights to `OUT.npz` as `w0, w1, ...`, the last epoch's logs
as `log_<name>`, and the results of `evaluate` on one meta-batch of other
tasks as `eval_<name>`.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

import keras_ga

SUPPORT, QUERY = 6, 5


def build(algo, weighting, batch_norm=False):
    """A float64 sine-regression MetaModel, compiled with plain SGD.

    SGD rather than Adam so that a wrongly scaled gradient shows in the
    weights (Adam's first step is scale-invariant).
    """
    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((1,), dtype="float64"),
        keras.layers.Dense(16, activation="tanh", dtype="float64"),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(dtype="float64"))
    layers.append(keras.layers.Dense(1, dtype="float64"))
    model = keras_ga.MetaModel(
        keras.Sequential(layers),
        algo=algo,
        weighting=weighting,
        inner_steps=2,
        inner_learning_rate=0.02,
        # Sub-batches smaller than the support set: the per-task seeds (the
        # global task index) matter for every algorithm.
        inner_batch_size=4,
        # The map traces faster than tf.vectorized_map's second order.
        task_execution="map",
    )
    # Keras never compiles with XLA under tf.distribute, and under XLA the
    # stateless RNG of the sub-batch order draws other numbers: the
    # single-device reference runs without XLA too.
    model.compile(
        optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=False
    )
    return model


def episodes(num_tasks, seed=0):
    """`num_tasks` sine tasks as one float64 episode dict."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.1, 5.0, size=(num_tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, size=(num_tasks, 1, 1))
    sx = rng.uniform(-5.0, 5.0, size=(num_tasks, SUPPORT, 1))
    qx = rng.uniform(-5.0, 5.0, size=(num_tasks, QUERY, 1))
    return {
        "support_x": sx,
        "support_y": amplitude * np.sin(sx - phase),
        "query_x": qx,
        "query_y": amplitude * np.sin(qx - phase),
    }


def dataset(tasks, steps):
    """`steps` meta-batches of `tasks` tasks, batched on the task axis.

    The task axis is the batch axis that tf.distribute splits over replicas.
    """
    data = tf.data.Dataset.from_tensor_slices(episodes(tasks * steps))
    return data.batch(tasks, drop_remainder=True)


def eval_dataset(tasks):
    """One meta-batch of `tasks` tasks unlike those of `dataset`."""
    data = tf.data.Dataset.from_tensor_slices(episodes(tasks, seed=1))
    return data.batch(tasks, drop_remainder=True)


def main(argv):
    algo, tasks, steps, out = argv[1], int(argv[2]), int(argv[3]), argv[4]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build(algo, "agreement")
    history = model.fit(dataset(tasks, steps), epochs=1, verbose=0).history
    arrays = {f"w{i}": w for i, w in enumerate(model.base.get_weights())}
    arrays.update({f"log_{k}": v[-1] for k, v in history.items()})
    scores = model.evaluate(eval_dataset(tasks), verbose=0, return_dict=True)
    arrays.update({f"eval_{k}": v for k, v in scores.items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv)
