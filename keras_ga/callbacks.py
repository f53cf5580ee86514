"""Keras callbacks for meta-training: resumable episode streams, and
MAML++'s derivative-order annealing (`DerivativeOrderAnnealing`) and
multi-step loss annealing (`MultiStepLossAnnealing`).

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

from keras_ga import _checks
from keras_ga import multi_step_loss
from keras_ga._optional import tensorflow as tf


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


class DerivativeOrderAnnealing(keras.callbacks.Callback):
    """Second-order MAML that trains first-order for its first epochs.

    MAML++'s derivative-order annealing (Antoniou et al., "How to train your
    MAML", ICLR 2019): during the first `first_order_epochs` epochs of `fit`
    a `MetaModel(algo="maml")` takes first-order MAML's outer gradient
    (the query gradient at theta_i, no second derivatives: cheaper, and
    stabler early on), then MAML's. The switch sets the model's
    `first_order` and rebuilds its train function once, so the step is
    traced once for each phase. A resumed `fit` (`initial_epoch` at or past
    `first_order_epochs`) trains second-order from its first epoch.

    Args:
        first_order_epochs: how many epochs train first-order, a
            non-negative int (0: second order throughout).

    Example:

    ```python
    model = keras_ga.MetaModel(base, algo="maml", inner_steps=5)
    model.compile(optimizer="adam", loss=loss)
    model.fit(tasks, epochs=100, steps_per_epoch=500, callbacks=[
        keras_ga.callbacks.DerivativeOrderAnnealing(first_order_epochs=50)])
    ```
    """

    def __init__(self, first_order_epochs: int):
        super().__init__()
        if (
            isinstance(first_order_epochs, bool)
            or not isinstance(first_order_epochs, int)
            or first_order_epochs < 0
        ):
            raise ValueError(
                "`first_order_epochs` must be a non-negative int. Received: "
                f"first_order_epochs={first_order_epochs!r}"
            )
        self.first_order_epochs = first_order_epochs

    def on_train_begin(self, logs=None):
        algo = getattr(self.model, "algo", None)
        if algo != "maml":
            raise ValueError(
                "`DerivativeOrderAnnealing` anneals second-order MAML: it "
                "needs a `keras_ga.MetaModel` with algo='maml'. Received: "
                f"a {type(self.model).__name__} with algo={algo!r}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        first_order = epoch < self.first_order_epochs
        if self.model.first_order != first_order:
            self.model.first_order = first_order  # drops the train function
            self.model.make_train_function()

    def on_train_end(self, logs=None):
        # Later `fit` calls without the callback train as `algo` says.
        self.model.first_order = False


class MultiStepLossAnnealing(keras.callbacks.Callback):
    """Anneals the multi-step loss's importance towards the last step.

    At the start of every epoch of `fit`, assigns MAML++'s importance vector
    of that epoch (`keras_ga.multi_step_loss.importance`) to the model's
    `step_loss_weights`: uniform at epoch 0, moving linearly to the last
    step, which alone counts from epoch `epochs` on. The vector is a
    variable, so the step is not traced again; a resumed `fit` assigns the
    vector of its first epoch.

    Args:
        epochs: the epochs of the annealing, a positive int (MAML++ used
            15 of its 100).

    Example:

    ```python
    model = keras_ga.MetaModel(base, algo="maml", inner_steps=5,
                               multi_step_loss=True)
    model.compile(optimizer="adam", loss=loss)
    model.fit(tasks, epochs=100, steps_per_epoch=500, callbacks=[
        keras_ga.callbacks.MultiStepLossAnnealing(epochs=15)])
    ```
    """

    def __init__(self, epochs: int):
        super().__init__()
        _checks.check_positive_int("epochs", epochs)
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        if getattr(self.model, "step_loss_weights", None) is None:
            raise ValueError(
                "`MultiStepLossAnnealing` anneals the multi-step loss: it "
                "needs a `keras_ga.MetaModel` with multi_step_loss=True. "
                f"Received: a {type(self.model).__name__} without it."
            )

    def on_epoch_begin(self, epoch, logs=None):
        weights = self.model.step_loss_weights
        weights.assign(
            multi_step_loss.importance(epoch, weights.shape[0], self.epochs)
        )
