"""A resumable MetaModel training run, for `resume_test.py`.

    python tests/resume_worker.py WORK_DIR [PAUSE_AFTER_EPOCH]

trains a small sine-regression MetaModel (MAML, agreement weighting, Adam)
for `EPOCHS` epochs of `STEPS_PER_EPOCH` meta-batches with
`keras.callbacks.BackupAndRestore` in `WORK_DIR/backup` and a
`ModelCheckpoint` to `WORK_DIR/model.keras`, then writes the final weights
to `WORK_DIR/final.npz` and the number of epochs this process ran to
`WORK_DIR/epochs_run.txt`. With `PAUSE_AFTER_EPOCH=k` it writes
`WORK_DIR/paused` once epoch k is backed up and then waits to be killed.
With `REPLICAS=R` in the environment (R > 1) it trains under
`MirroredStrategy` over R logical CPU devices.

How the episode stream resumes: meta-batch t (counting from 0 over the
whole run) holds tasks `t * TASKS ... (t + 1) * TASKS - 1`, and task i is
drawn by stateless ops keyed by `(SEED, i)`. The stream starts at the step
held by `StreamStart`, a callback placed after `BackupAndRestore` that
copies the optimizer's restored iteration count (part of its saved state)
into its own variable at the start of `fit`. The dataset reads that
variable, not the optimizer's counter: tf.data may open the stream lazily,
during the first steps, when the counter has already moved (seen under
`MirroredStrategy`, where reading the counter made 4 of 11 test runs
start late and end on other weights). A restarted run thus sees exactly the
meta-batches the interrupted run had not trained on. Backups are taken per
epoch (`save_freq="epoch"`): Keras resumes at an epoch boundary, so a
mid-epoch backup would replay part of an epoch.
"""

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_ga

SEED, TASKS, SHOTS = 7, 4, 5
STEPS_PER_EPOCH, EPOCHS = 4, 5


def sine_task(index):
    """Task `index`: a sine wave and its support and query points."""
    key = tf.stack([tf.constant(SEED, tf.int64), index])
    keys = tf.unstack(tf.random.split(key, 4))
    amplitude = tf.random.stateless_uniform([], keys[0], 0.1, 5.0)
    phase = tf.random.stateless_uniform([], keys[1], 0.0, np.pi)
    xs = [
        tf.random.stateless_uniform([SHOTS, 1], k, -5.0, 5.0) for k in keys[2:]
    ]
    ys = [amplitude * tf.sin(x - phase) for x in xs]
    return dict(zip(keras_ga.EPISODE_KEYS, (xs[0], ys[0], xs[1], ys[1])))


class StreamStart(keras.callbacks.Callback):
    """The meta-batch the episode stream starts at, fixed for the whole fit.

    Place it after `BackupAndRestore`: at the start of `fit` it copies the
    optimizer's (restored) iteration count into `step`.
    """

    def __init__(self):
        super().__init__()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)

    def on_train_begin(self, logs=None):
        self.step.assign(int(self.model.optimizer.iterations.numpy()))


def resumable_episodes(start):
    """Meta-batches from meta-batch `start` (a `tf.Variable`) on."""

    def from_start(_):
        return tf.data.Dataset.range(start * TASKS, tf.int64.max)

    tasks = tf.data.Dataset.from_tensors(0).flat_map(from_start)
    return tasks.map(sine_task).batch(TASKS, drop_remainder=True)


def build():
    keras.utils.set_random_seed(SEED)
    base = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model = keras_ga.MetaModel(
        base,
        algo="maml",
        weighting="agreement",
        inner_steps=1,
        inner_learning_rate=0.01,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


class Pause(keras.callbacks.Callback):
    """Announces that epoch `epoch` is backed up, then waits to be killed."""

    def __init__(self, epoch, path):
        super().__init__()
        self.epoch, self.path = epoch, path

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            with open(self.path, "w") as f:
                f.write(str(epoch))
            while True:
                time.sleep(1)


class CountEpochs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1


def strategy_from_env():
    """`MirroredStrategy` over `$REPLICAS` logical CPUs, else the default."""
    replicas = int(os.environ.get("REPLICAS", "1"))
    if replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
    )
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def main(argv):
    work = argv[1]
    with strategy_from_env().scope():
        model = build()
    counter, start = CountEpochs(), StreamStart()
    callbacks = [
        keras.callbacks.BackupAndRestore(
            os.path.join(work, "backup"), double_checkpoint=True
        ),
        start,
        keras.callbacks.ModelCheckpoint(os.path.join(work, "model.keras")),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        counter,
    ]
    if len(argv) > 2:
        # After BackupAndRestore in the list: the backup is on disk.
        callbacks.append(Pause(int(argv[2]), os.path.join(work, "paused")))
    model.fit(
        resumable_episodes(start.step),
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        callbacks=callbacks,
        verbose=0,
    )
    weights = model.base.get_weights()
    np.savez(
        os.path.join(work, "final.npz"),
        iterations=int(model.optimizer.iterations.numpy()),
        **{f"w{i}": w for i, w in enumerate(weights)},
    )
    with open(os.path.join(work, "epochs_run.txt"), "w") as f:
        f.write(str(counter.count))


if __name__ == "__main__":
    main(sys.argv)
