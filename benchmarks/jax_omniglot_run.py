"""A short Omniglot 5-way 1-shot MAML run on Keras' JAX backend.

The training run of the accelerator script (`benchmarks/accelerator.py`),
which needs neither TensorFlow nor tf.data: the episodes come from the
NumPy path of `keras_ga.datasets.omniglot_episodes` (Vinyals split, four
rotations), the model and settings are the `maml_5way_1shot` preset's
(`examples/configs/omniglot.py`: conv4 with 64 filters, one inner SGD step
of 0.4 in training and three at test, meta-batch 32, Adam 1e-3), with
uniform weighting. It trains `--iterations` meta-steps, then evaluates
`--eval_tasks` test tasks (transductive BatchNorm, as the MAML paper) and
prints one JSON line: accuracy with its 95% CI, the training wall time,
meta-steps per second after the first epoch, and JAX's device. Command,
from the repository root:

    KERAS_GA_DATA=/path/to/data python -m benchmarks.jax_omniglot_run \
        --iterations=2000 --task_execution=vectorized
"""

import os

os.environ["KERAS_BACKEND"] = "jax"

import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import _timing  # noqa: E402

_ITERATIONS = flags.DEFINE_integer("iterations", 2000, "Meta-steps.")
_EPOCH = flags.DEFINE_integer("epoch", 250, "Meta-steps per Keras epoch.")
_EVAL_TASKS = flags.DEFINE_integer("eval_tasks", 600, "Test tasks.")
_TASK_EXECUTION = flags.DEFINE_enum(
    "task_execution",
    "auto",
    ["auto", "map", "vectorized"],
    "MetaModel's task_execution.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Omniglot's folder; default $KERAS_GA_DATA."
)


class _EpochTimes:
    """Wall time at the end of each epoch (a Keras callback, made lazily)."""

    def __init__(self):
        import keras

        times = self.times = []

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter())

        self.callback = Callback()


def main(argv):
    del argv
    import jax
    import keras

    import keras_ga
    from examples.configs import omniglot as presets

    config = presets.PRESETS["maml_5way_1shot"]
    common = dict(
        ways=config.ways,
        shots=config.shots,
        queries=config.queries,
        data_dir=_DATA_DIR.value,
        pipeline="numpy",
    )
    train = keras_ga.datasets.omniglot_episodes(
        "train", meta_batch_size=config.meta_batch_size, seed=0, **common
    )
    test = keras_ga.datasets.omniglot_episodes(
        "test",
        meta_batch_size=20,
        seed=config.eval_seed,
        num_tasks=_EVAL_TASKS.value,
        **common,
    )
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(
        keras_ga.conv4((28, 28, 1), config.ways, config.filters),
        algo="maml",
        inner_steps=config.inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        eval_inner_steps=config.eval_inner_steps,
        task_execution=_TASK_EXECUTION.value,
        pre_adaptation_metrics=False,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.outer_learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    epoch = min(_EPOCH.value, _ITERATIONS.value)
    epochs = max(1, _ITERATIONS.value // epoch)
    timer = _EpochTimes()
    started = time.perf_counter()
    model.fit(
        train,
        steps_per_epoch=epoch,
        epochs=epochs,
        verbose=0,
        callbacks=[timer.callback],
    )
    trained = time.perf_counter() - started
    later = timer.times[-1] - timer.times[0] if epochs > 1 else None
    result = keras_ga.evaluate_tasks(
        model, test, steps=config.eval_inner_steps, verbose=0
    )
    device = jax.devices()[0]
    _timing.emit(
        {
            "run": "omniglot 5-way 1-shot MAML (JAX)",
            "meta_steps": epochs * epoch,
            "meta_batch_size": config.meta_batch_size,
            "task_execution": model.resolved_task_execution,
            "train_s": trained,
            "steps_per_s_after_first_epoch": (
                (epochs - 1) * epoch / later if later else None
            ),
            "accuracy": result.mean,
            "ci95": result.ci95,
            "test_tasks": result.num_tasks,
            "device": f"{device.platform}: {device.device_kind}",
        }
    )


if __name__ == "__main__":
    app.run(main)
