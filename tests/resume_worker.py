"""A resumable MetaModel training run, for `resume_test.py`.

    python -m tests.resume_worker WORK_DIR [PAUSE_AFTER_EPOCH]

trains a small sine-regression MetaModel (MAML, agreement weighting, Adam)
for `EPOCHS` epochs of `STEPS_PER_EPOCH` meta-batches with
`keras.callbacks.BackupAndRestore` in `WORK_DIR/backup` and a
`ModelCheckpoint` to `WORK_DIR/model.keras`, then writes the final weights
to `WORK_DIR/final.npz` and the number of epochs this process ran to
`WORK_DIR/epochs_run.txt`. With `PAUSE_AFTER_EPOCH=k` it writes
`WORK_DIR/paused` once epoch k is backed up and then waits to be killed.
With `REPLICAS=R` in the environment (R > 1) it trains under
`MirroredStrategy` over R logical CPU devices.

How the episode stream resumes: the stream is `keras_ga.datasets.sine_tasks`
started at `keras_ga.EpisodeStreamStart.step`, the callback placed after
`BackupAndRestore` that copies the optimizer's restored iteration count into
that variable at the start of `fit`; meta-batch t (counting from 0 over the
whole run) holds tasks `t * TASKS ... (t + 1) * TASKS - 1`, each drawn from
`(SEED, task index)` alone. A restarted run thus sees exactly the
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


def resumable_episodes(start):
    """Sine meta-batches from meta-batch `start` (an int or a `tf.Variable`)."""
    return keras_ga.datasets.sine_tasks(
        shots=SHOTS,
        queries=SHOTS,
        meta_batch_size=TASKS,
        seed=SEED,
        phase_range=(0.0, np.pi),
        start=start,
    )


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
    counter, start = CountEpochs(), keras_ga.EpisodeStreamStart()
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
