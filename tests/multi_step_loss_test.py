"""Tests of MAML++'s multi-step loss (keras_ga.multi_step_loss)."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga.multi_step_loss import importance
from tests import support

D = 3
LR = 0.05
STEPS = 3


def meta_model(algo="maml", **kw):
    kw.setdefault("multi_step_loss", True)
    model = keras_ga.MetaModel(
        support.tanh_base(D),
        algo=algo,
        weighting="uniform",
        inner_steps=STEPS,
        inner_learning_rate=LR,
        **kw,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def hand_path(base, theta, x, y, steps):
    """[theta_1, ..., theta_steps] of inner SGD, eagerly."""
    params, path = [tf.constant(t) for t in theta], []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = support.stateless_mse(base, params, x, y)
        grads = tape.gradient(loss, params)
        params = [p - LR * g for p, g in zip(params, grads)]
        path.append(params)
    return path


class ImportanceTest(absltest.TestCase):
    def test_maml_plus_plus_schedule_by_hand(self):
        # decay 1 / (5 * 10) = 0.02 per epoch from each non-final step.
        np.testing.assert_allclose(
            importance(3, 5, 10), [0.14, 0.14, 0.14, 0.14, 0.44], rtol=1e-6
        )
        # The floor 0.03 / 5 and the final cap 1 - 4 * 0.006.
        np.testing.assert_allclose(
            importance(99, 5, 100), [0.006] * 4 + [0.976], rtol=1e-5
        )
        np.testing.assert_array_equal(importance(100, 5, 100), [0] * 4 + [1])
        for epoch in range(12):
            weights = importance(epoch, 5, 10)
            self.assertAlmostEqual(float(weights.sum()), 1.0, places=6)
            self.assertEqual(weights.dtype, np.float32)

    def test_one_step(self):
        np.testing.assert_array_equal(importance(0, 1, 10), [1.0])


class MetaGradientTest(parameterized.TestCase):
    def test_maml_matches_finite_differences(self):
        model = meta_model()
        model.step_loss_weights.assign([0.2, 0.3, 0.5])
        weights = model.step_loss_weights.numpy().astype("float64")
        ep = support.linear_episode(1, seed=3, dim=D)
        results = model.run_tasks(ep, training=True)
        grads = [g[0].numpy() for g in results.outer_grads]
        base, theta = model.base, support.values(model.base.trainable_variables)
        sx, sy, qx, qy = support.task(ep, 0)

        def loss_at(point):
            path = hand_path(base, point, sx, sy, STEPS)
            return sum(
                w * float(support.stateless_mse(base, phi, qx, qy))
                for w, phi in zip(weights, path)
            )

        support.assert_matches_finite_differences(self, loss_at, theta, grads)
        # The reported loss is still the query loss after the last step.
        path = hand_path(base, theta, sx, sy, STEPS)
        self.assertAlmostEqual(
            float(results.loss[0]),
            float(support.stateless_mse(base, path[-1], qx, qy)),
            places=12,
        )

    def test_first_order_is_the_weighted_sum_of_step_gradients(self):
        model = meta_model("fomaml")
        model.step_loss_weights.assign([0.1, 0.6, 0.3])
        weights = model.step_loss_weights.numpy().astype("float64")
        ep = support.linear_episode(1, seed=4, dim=D)
        results = model.run_tasks(ep, training=True)
        base, theta = model.base, support.values(model.base.trainable_variables)
        sx, sy, qx, qy = support.task(ep, 0)
        want = [np.zeros_like(t) for t in theta]
        for w, phi in zip(weights, hand_path(base, theta, sx, sy, STEPS)):
            with tf.GradientTape() as tape:
                tape.watch(phi)
                loss = support.stateless_mse(base, phi, qx, qy)
            for i, g in enumerate(tape.gradient(loss, phi)):
                want[i] += w * g.numpy()
        for got, w in zip(results.outer_grads, want):
            np.testing.assert_allclose(got[0].numpy(), w, rtol=1e-10)

    @parameterized.parameters("maml", "fomaml")
    def test_last_step_alone_is_the_plain_loss(self, algo):
        ep = support.linear_episode(2, seed=5, dim=D)
        msl = meta_model(algo)
        msl.step_loss_weights.assign([0.0, 0.0, 1.0])
        plain = meta_model(algo, multi_step_loss=False)
        a = msl.run_tasks(ep, training=True).outer_grads
        b = plain.run_tasks(ep, training=True).outer_grads
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-10)

    def test_learned_rates_get_the_multi_step_gradient(self):
        model = meta_model(learn_inner_rates="per_layer_per_step")
        ep = support.linear_episode(1, seed=6, dim=D)
        grads = model.run_tasks(ep, training=True).rate_grads
        # Every step's rate moves the later steps' query losses.
        for g in grads:
            self.assertTrue(np.all(np.abs(g[0].numpy()) > 0))


class TrainingTest(absltest.TestCase):
    def test_annealing_callback_assigns_without_retracing(self):
        model = meta_model()
        seen = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seen.append(
                model.step_loss_weights.numpy().copy()
            )
        )
        data = tf.data.Dataset.from_tensors(
            support.linear_episode(2, dim=D)
        ).repeat()
        model.fit(
            data,
            epochs=3,
            steps_per_epoch=2,
            verbose=0,
            callbacks=[keras_ga.callbacks.MultiStepLossAnnealing(2), record],
        )
        for epoch, weights in enumerate(seen):
            np.testing.assert_array_equal(weights, importance(epoch, STEPS, 2))
        function = model.train_function
        while not hasattr(function, "experimental_get_tracing_count"):
            function = function.__closure__[0].cell_contents
        self.assertEqual(function.experimental_get_tracing_count(), 1)

    def test_saved_model_keeps_the_multi_step_loss(self):
        model = meta_model()
        model.step_loss_weights.assign([0.1, 0.2, 0.7])
        path = os.path.join(support.make_tempdir(self), "msl.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertTrue(loaded.multi_step_loss)
        np.testing.assert_allclose(
            loaded.step_loss_weights.numpy(), [0.1, 0.2, 0.7]
        )

    def test_anil_head_with_multi_step_loss(self):
        base = support.tanh_base(D)
        model = keras_ga.MetaModel(
            base,
            inner_steps=STEPS,
            inner_learning_rate=LR,
            adapt_layers=[base.layers[-1].name],
            multi_step_loss=True,
        )
        model.compile(optimizer="sgd", loss="mse")
        ep = support.linear_episode(2, seed=7, dim=D)
        results = model.run_tasks(ep, training=True)
        for g in results.outer_grads:
            self.assertTrue(np.all(np.isfinite(g)))
            self.assertGreater(np.abs(g).max(), 0.0)
        np.testing.assert_array_equal(results.updates[0].numpy(), 0.0)


class ArgumentTest(absltest.TestCase):
    def test_refusals(self):
        with self.assertRaisesRegex(ValueError, "algo='reptile'"):
            meta_model("reptile")
        with self.assertRaisesRegex(TypeError, "must be a bool"):
            meta_model(multi_step_loss="yes")
        model = meta_model()
        with self.assertRaisesRegex(ValueError, "Received: steps=2"):
            model.run_tasks(
                support.linear_episode(2, dim=D), training=True, steps=2
            )
        for bad in (0, 1.5, True):
            with self.assertRaisesRegex(ValueError, "`epochs` must be"):
                keras_ga.callbacks.MultiStepLossAnnealing(bad)
        plain = meta_model(multi_step_loss=False)
        self.assertIsNone(plain.step_loss_weights)
        with self.assertRaisesRegex(ValueError, "multi_step_loss=True"):
            plain.fit(
                tf.data.Dataset.from_tensors(
                    support.linear_episode(2, dim=D)
                ).repeat(),
                steps_per_epoch=1,
                verbose=0,
                callbacks=[keras_ga.callbacks.MultiStepLossAnnealing(2)],
            )


if __name__ == "__main__":
    absltest.main()
