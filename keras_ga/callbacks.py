"""Keras callbacks for meta-training: resumable episode streams.

A meta-training run killed mid-way resumes from its last
`keras.callbacks.BackupAndRestore` backup, optimizer state included. For the
resumed run to end on the same weights as an uninterrupted one, it must also
see the same meta-batches: those the interrupted run had not trained on.
keras_ga's episode streams are indexed by step (task `i` is drawn from
`(seed, i)` alone), so this only needs the stream to start at the restored
step, which `EpisodeStreamStart` provides.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class EpisodeStreamStart(keras.callbacks.Callback):
    """Starts an endless episode stream at the step a resumed `fit` is at.

    At the start of `fit` it copies the optimizer's iteration count (the
    number of meta-batches trained so far, which `BackupAndRestore` restores
    with the optimizer) into `step`, a variable that the episode pipelines
    of keras_ga take as their `start` (`keras_ga.few_shot_episodes`,
    `keras_ga.datasets.sine_tasks`, `omniglot_episodes`,
    `miniimagenet_episodes`, or `keras_ga.sampler.task_indices` for a task
    function of your own). The stream reads `step` when iteration begins,
    so a fresh run starts at meta-batch 0 and a resumed one where the
    backup left off.

    Place it after `BackupAndRestore` in the callback list, so that it reads
    the restored count. It keeps its own variable rather than letting the
    dataset read `optimizer.iterations`: tf.data may open the stream during
    the first training steps, when that counter has already moved (seen
    under `MirroredStrategy`, where such runs started late and ended on
    other weights). Keras resumes at an epoch boundary, so back up once per
    epoch (`save_freq="epoch"`, the default). Create the callback outside a
    `tf.distribute` strategy scope.

    Attributes:
        step: scalar int64 `tf.Variable`, the meta-batch the stream starts
            at; 0 until the start of `fit`.

    Example:

    ```python
    stream_start = keras_ga.EpisodeStreamStart()
    train = keras_ga.datasets.sine_tasks(
        shots=10, queries=10, meta_batch_size=25, seed=0,
        start=stream_start.step)
    model.fit(train, epochs=10, steps_per_epoch=100, callbacks=[
        keras.callbacks.BackupAndRestore("backup"),
        stream_start,  # after BackupAndRestore
        keras.callbacks.ModelCheckpoint("meta.keras"),
    ])
    ```
    """

    def __init__(self):
        super().__init__()
        self.step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="episode_stream_start"
        )

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "`EpisodeStreamStart` reads the optimizer's iteration count: "
                "compile the model before `fit`. Received: a model without "
                f"an optimizer ({type(self.model).__name__})."
            )
        self.step.assign(int(optimizer.iterations.numpy()))
