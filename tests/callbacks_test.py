"""Tests of keras_ga.callbacks: EpisodeStreamStart, DerivativeOrderAnnealing.

`resume_test.py` checks the whole recipe: a run killed by SIGKILL and
resumed with it ends on the uninterrupted run's weights.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest

import keras_ga
from keras_ga.datasets import sine_tasks
from tests import support

TASKS = 2


def sine_model(compile_it=True):
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model = keras_ga.MetaModel(base, inner_steps=1, inner_learning_rate=0.01)
    if compile_it:
        model.compile(optimizer="sgd", loss="mse")
    return model


def episodes(start):
    return sine_tasks(
        shots=3, queries=3, meta_batch_size=TASKS, seed=0, start=start
    )


class EpisodeStreamStartTest(absltest.TestCase):
    def test_exported(self):
        self.assertIs(
            keras_ga.EpisodeStreamStart, keras_ga.callbacks.EpisodeStreamStart
        )
        self.assertIn("EpisodeStreamStart", keras_ga.__all__)

    def test_step_is_an_int64_scalar_variable_at_zero(self):
        start = keras_ga.EpisodeStreamStart()
        self.assertIsInstance(start.step, tf.Variable)
        self.assertEqual(start.step.dtype, tf.int64)
        self.assertEqual(start.step.shape, ())
        self.assertFalse(start.step.trainable)
        self.assertEqual(int(start.step), 0)

    def test_train_begin_copies_the_optimizer_step(self):
        model = sine_model()
        model.optimizer.iterations.assign(7)
        start = keras_ga.EpisodeStreamStart()
        start.set_model(model)
        start.on_train_begin()
        self.assertEqual(int(start.step), 7)
        # Fixed for the fit: training steps do not move it.
        model.optimizer.iterations.assign(9)
        self.assertEqual(int(start.step), 7)

    def test_fit_trains_on_the_meta_batches_after_the_restored_step(self):
        start = keras_ga.EpisodeStreamStart()
        resumed = sine_model()
        # As after BackupAndRestore: 3 meta-batches already trained on.
        resumed.optimizer.iterations.assign(3)
        resumed.fit(
            episodes(start.step),
            epochs=1,
            steps_per_epoch=2,
            callbacks=[start],
            verbose=0,
        )
        self.assertEqual(int(start.step), 3)
        self.assertEqual(int(resumed.optimizer.iterations), 5)
        # Plain SGD on meta-batches 3 and 4 of the stream from 0.
        reference = sine_model()
        for batch in list(episodes(0).take(5))[3:]:
            reference.train_on_batch(batch)
        for a, b in zip(
            resumed.base.get_weights(), reference.base.get_weights()
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    def test_optimizer_counter_is_refused_as_start(self):
        # Read by the dataset, it may have moved when tf.data opens the
        # stream; the callback's own variable is the supported start.
        model = sine_model()
        with self.assertRaisesRegex(
            TypeError,
            r"`start` must be an int or an integer scalar `tf.Variable` "
            r"\(such as `EpisodeStreamStart.step`\)",
        ):
            episodes(model.optimizer.iterations)

    def test_uncompiled_model(self):
        start = keras_ga.EpisodeStreamStart()
        start.set_model(sine_model(compile_it=False))
        with self.assertRaisesRegex(
            ValueError,
            r"`EpisodeStreamStart` reads the optimizer's iteration count: "
            r"compile the model before `fit`\. Received: a model without an "
            r"optimizer \(MetaModel\)\.",
        ):
            start.on_train_begin()


if __name__ == "__main__":
    absltest.main()


def tanh_model(algo="maml"):
    model = keras_ga.MetaModel(
        support.tanh_base(3),
        algo=algo,
        weighting="uniform",
        inner_steps=2,
        inner_learning_rate=0.1,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


class Phases(keras.callbacks.Callback):
    """Records, per epoch, the order used and the train function's traces."""

    def __init__(self):
        super().__init__()
        self.first_order, self.functions = [], {}

    def on_epoch_end(self, epoch, logs=None):
        self.first_order.append(self.model.first_order)
        function = self.model.train_function
        self.functions[id(function)] = function


def trace_count(function):
    """Traces of the tf.function inside a MetaModel's train function."""
    inner = function
    while not hasattr(inner, "experimental_get_tracing_count"):
        inner = inner.__closure__[0].cell_contents
    return inner.experimental_get_tracing_count()


class DerivativeOrderAnnealingTest(absltest.TestCase):
    def test_first_order_maml_step_is_fomaml_step(self):
        ep = support.linear_episode(3, dim=3, seed=2)
        maml, fomaml = tanh_model(), tanh_model("fomaml")
        maml.first_order = True
        a = maml.run_tasks(ep, training=True).outer_grads
        b = fomaml.run_tasks(ep, training=True).outer_grads
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-12)
        maml.first_order = False
        c = maml.run_tasks(ep, training=True).outer_grads
        self.assertGreater(max(np.abs(x - y).max() for x, y in zip(a, c)), 1e-6)

    def test_fit_switches_once_and_traces_once_per_phase(self):
        ep = support.linear_episode(2, dim=3, seed=3)
        data = tf.data.Dataset.from_tensors(ep).repeat()
        model, phases = tanh_model(), Phases()
        model.fit(
            data,
            epochs=4,
            steps_per_epoch=2,
            verbose=0,
            callbacks=[
                keras_ga.callbacks.DerivativeOrderAnnealing(2),
                phases,
            ],
        )
        self.assertEqual(phases.first_order, [True, True, False, False])
        self.assertLen(phases.functions, 2)
        self.assertEqual(
            [trace_count(f) for f in phases.functions.values()], [1, 1]
        )
        self.assertFalse(model.first_order)
        # The weights are those of 2 x 2 first-order steps, then 2 x 2
        # second-order ones.
        replay = tanh_model()
        for first_order in (True, True, False, False):
            replay.first_order = first_order
            for _ in range(2):
                replay.train_on_batch(ep)
        for x, y in zip(model.base.weights, replay.base.weights):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-10)

    def test_resumed_fit_past_the_first_order_epochs(self):
        model, phases = tanh_model(), Phases()
        model.fit(
            tf.data.Dataset.from_tensors(
                support.linear_episode(2, dim=3)
            ).repeat(),
            epochs=4,
            initial_epoch=2,
            steps_per_epoch=1,
            verbose=0,
            callbacks=[keras_ga.callbacks.DerivativeOrderAnnealing(2), phases],
        )
        self.assertEqual(phases.first_order, [False, False])
        self.assertLen(phases.functions, 1)

    def test_refusals(self):
        for bad in (-1, 1.5, True, None):
            with self.assertRaisesRegex(ValueError, "first_order_epochs"):
                keras_ga.callbacks.DerivativeOrderAnnealing(bad)
        model = tanh_model("fomaml")
        with self.assertRaisesRegex(ValueError, "algo='maml' only"):
            model.first_order = True
        with self.assertRaisesRegex(ValueError, "algo='fomaml'"):
            model.fit(
                tf.data.Dataset.from_tensors(
                    support.linear_episode(2, dim=3)
                ).repeat(),
                steps_per_epoch=1,
                verbose=0,
                callbacks=[keras_ga.callbacks.DerivativeOrderAnnealing(1)],
            )
