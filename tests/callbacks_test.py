"""Tests of keras_ga.callbacks.EpisodeStreamStart.

`resume_test.py` checks the whole recipe: a run killed by SIGKILL and
resumed with it ends on the uninterrupted run's weights.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest

import keras_ga
from keras_ga.datasets import sine_tasks

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
