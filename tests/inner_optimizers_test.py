"""Tests of the inner optimizers: Adam's update, moments, MAML through it."""

import functools
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import inner_loop
from keras_ga import inner_optimizers
from tests import support

D = 3
LR = 0.05


def linear_base():
    keras.utils.set_random_seed(0)
    return support.linear_base(D)


def mlp_base():
    return support.tanh_base(D)


linear_episode = functools.partial(support.linear_episode, dim=D)


def numpy_adam(theta, x, y, steps, b1, b2=0.999, eps=1e-8, state=None):
    """Hand Adam (TensorFlow 1's form) on a linear task: theta_k and state."""
    count, m, v = state or (0, np.zeros_like(theta), np.zeros_like(theta))
    for _ in range(steps):
        count += 1
        g = support.mse_grad(theta, x, y)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        lr_t = LR * np.sqrt(1 - b2**count) / (1 - b1**count)
        theta = theta - lr_t * m / (np.sqrt(v) + eps)
    return theta, (count, m, v)


def meta_model(base, algo="fomaml", steps=2, **kw):
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(
        base,
        algo=algo,
        weighting="uniform",
        inner_steps=steps,
        inner_learning_rate=LR,
        **kw,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def task(ep, i):
    return [ep[k][i] for k in keras_ga.EPISODE_KEYS]


class AdamUpdateTest(parameterized.TestCase):
    @parameterized.product(beta_1=[0.0, 0.9], steps=[2, 3])
    def test_inner_steps_match_hand_formula(self, beta_1, steps):
        base = linear_base()
        loop = inner_loop.InnerLoop(
            base, keras.losses.get("mse"), inner_loop.adam(LR, beta_1)
        )
        sx, sy, _, _ = task(linear_episode(1, seed=2), 0)
        theta = base.get_weights()[0]
        phi, _, opt_state, _ = loop.run(
            [tf.constant(theta)],
            [],
            tf.constant(sx),
            tf.constant(sy),
            steps=steps,
            batch_size=6,
            seed=tf.constant([0, 0]),
            second_order=False,
        )
        expected, (count, m, v) = numpy_adam(theta, sx, sy, steps, beta_1)
        np.testing.assert_allclose(phi[0].numpy(), expected, rtol=1e-12)
        self.assertEqual(int(opt_state.count), count)
        np.testing.assert_allclose(opt_state.mu[0].numpy(), m, rtol=1e-12)
        np.testing.assert_allclose(opt_state.nu[0].numpy(), v, rtol=1e-12)

    def test_each_task_of_a_meta_batch_starts_from_zero_moments(self):
        model = meta_model(
            linear_base(), inner_optimizer=inner_optimizers.Adam(beta_1=0.9)
        )
        self.assertEqual(model.inner_optimizer_state, [])
        ep = linear_episode(3, seed=4)
        theta = model.base.get_weights()[0]
        for _ in range(2):  # the same updates at every meta-step
            updates = model.run_tasks(ep, training=True).updates[0].numpy()
            for i in range(3):
                sx, sy, _, _ = task(ep, i)
                phi, _ = numpy_adam(theta, sx, sy, 2, 0.9)
                np.testing.assert_allclose(updates[i], theta - phi, rtol=1e-10)

    def test_zero_gradient_gives_finite_second_order_gradient(self):
        # A weight the loss does not depend on has g = v = 0: the
        # derivative of sqrt(v) there must not turn into NaN.
        model = meta_model(
            keras.Sequential(
                [
                    keras.Input((D,), dtype="float64"),
                    keras.layers.Dense(1, dtype="float64"),
                    keras.layers.Dense(
                        1, kernel_initializer="zeros", dtype="float64"
                    ),
                ]
            ),
            algo="maml",
            inner_optimizer="adam",
        )
        grads = model.run_tasks(linear_episode(2), training=True).outer_grads
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g.numpy())))


class CarriedMomentsTest(absltest.TestCase):
    def _model(self):
        return meta_model(
            linear_base(),
            inner_optimizer=inner_optimizers.Adam(beta_1=0.9, moments="carry"),
        )

    def _stored(self, model):
        count, m, v = (np.asarray(s) for s in model.inner_optimizer_state)
        return int(count), m, v

    def test_state_after_a_step_is_the_mean_of_the_tasks_moments(self):
        model = self._model()
        ep = linear_episode(3, seed=5)
        for _ in range(2):
            theta = model.base.get_weights()[0]
            start = self._stored(model)
            finals = [
                numpy_adam(theta, *task(ep, i)[:2], 2, 0.9, state=start)
                for i in range(3)
            ]
            model.train_on_batch(ep)
            count, m, v = self._stored(model)
            self.assertEqual(count, start[0] + 2)
            np.testing.assert_allclose(
                m, np.mean([f[1][1] for f in finals], axis=0), rtol=1e-10
            )
            np.testing.assert_allclose(
                v, np.mean([f[1][2] for f in finals], axis=0), rtol=1e-10
            )
        self.assertGreater(np.abs(m).max(), 0.0)

    def test_evaluation_and_adapt_start_from_the_state_and_keep_it(self):
        model = self._model()
        train, test = linear_episode(3, seed=6), linear_episode(2, seed=7)
        model.train_on_batch(train)
        before = self._stored(model)
        theta = model.base.get_weights()[0]
        updates = model.run_tasks(test, training=False).updates[0].numpy()
        model.evaluate(test, verbose=0)
        keras_ga.evaluate_tasks(model, test, metric="mse", verbose=0)
        sx, sy, _, _ = task(test, 0)
        fast = model.adapt(sx, sy, steps=2)
        after = self._stored(model)
        self.assertEqual(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_array_equal(after[2], before[2])
        phi, _ = numpy_adam(theta, sx, sy, 2, 0.9, state=before)
        np.testing.assert_allclose(updates[0], theta - phi, rtol=1e-10)
        np.testing.assert_allclose(fast.get_weights()[0], phi, rtol=1e-10)
        fresh, _ = numpy_adam(theta, sx, sy, 2, 0.9)
        self.assertGreater(np.abs(fresh - phi).max(), 1e-6)


def post_adaptation_loss(base, theta, ep, steps, beta_1, eps):
    """L_query(theta_k(theta)) with a hand-written Adam, eagerly."""
    params = [tf.constant(t) for t in theta]
    sx, sy, qx, qy = task(ep, 0)
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    for t in range(1, steps + 1):
        with tf.GradientTape() as tape:
            tape.watch(params)
            out, _ = base.stateless_call(params, [], sx)
            loss = tf.reduce_mean(tf.square(out - sy))
        grads = [g.numpy() for g in tape.gradient(loss, params)]
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            lr_t = LR * np.sqrt(1 - 0.999**t) / (1 - beta_1**t)
            new.append(p.numpy() - lr_t * m[i] / (np.sqrt(v[i]) + eps))
        params = [tf.constant(p) for p in new]
    out, _ = base.stateless_call(params, [], qx)
    return float(tf.reduce_mean(tf.square(out - qy)))


class MetaGradientTest(parameterized.TestCase):
    @parameterized.parameters(0.0, 0.9)
    def test_maml_through_adam_matches_finite_differences(self, beta_1):
        eps = 1e-8
        opt = inner_optimizers.Adam(beta_1=beta_1, epsilon=eps)
        model = meta_model(mlp_base(), "maml", steps=3, inner_optimizer=opt)
        ep = linear_episode(1, seed=8)
        grads = model.run_tasks(ep, training=True).outer_grads
        grads = [g[0].numpy() for g in grads]
        theta = [v.numpy() for v in model.base.trainable_variables]
        rng = np.random.default_rng(1)
        for _ in range(3):
            d = [rng.normal(size=t.shape) for t in theta]
            h = 1e-6
            plus = [t + h * u for t, u in zip(theta, d)]
            minus = [t - h * u for t, u in zip(theta, d)]
            fd = (
                post_adaptation_loss(model.base, plus, ep, 3, beta_1, eps)
                - post_adaptation_loss(model.base, minus, ep, 3, beta_1, eps)
            ) / (2 * h)
            analytic = sum(np.sum(g * u) for g, u in zip(grads, d))
            self.assertLess(abs(analytic - fd) / abs(fd), 1e-6)

    def test_first_order_takes_the_query_gradient_at_theta_i(self):
        model = meta_model(
            mlp_base(), "fomaml", steps=3, inner_optimizer="adam"
        )
        maml = meta_model(mlp_base(), "maml", steps=3, inner_optimizer="adam")
        ep = linear_episode(1, seed=9)
        results = model.run_tasks(ep, training=True)
        theta = [v.numpy() for v in model.base.trainable_variables]
        phi = [
            tf.constant(t - u[0].numpy())
            for t, u in zip(theta, results.updates)
        ]
        _, _, qx, qy = task(ep, 0)
        with tf.GradientTape() as tape:
            tape.watch(phi)
            out, _ = model.base.stateless_call(phi, [], qx)
            loss = tf.reduce_mean(tf.square(out - qy))
        for got, want in zip(results.outer_grads, tape.gradient(loss, phi)):
            np.testing.assert_allclose(got[0].numpy(), want.numpy(), rtol=1e-8)
        # Same weights, so the difference is the second-order term.
        for a, b in zip(model.get_weights(), maml.get_weights()):
            np.testing.assert_array_equal(a, b)
        second = maml.run_tasks(ep, training=True).outer_grads
        self.assertGreater(
            max(
                np.abs(a[0].numpy() - b[0].numpy()).max()
                for a, b in zip(results.outer_grads, second)
            ),
            1e-3,
        )


class SavingTest(absltest.TestCase):
    def test_config_round_trip(self):
        opt = inner_optimizers.Adam(
            beta_1=0.5, beta_2=0.99, epsilon=1e-6, moments="carry"
        )
        again = inner_optimizers.get(keras.saving.serialize_keras_object(opt))
        self.assertEqual(again.get_config(), opt.get_config())
        model = meta_model(linear_base(), inner_optimizer=opt)
        copy = keras_ga.MetaModel.from_config(model.get_config())
        self.assertIsInstance(copy.inner_optimizer, inner_optimizers.Adam)
        self.assertEqual(copy.inner_optimizer.get_config(), opt.get_config())
        self.assertLen(copy.inner_optimizer_state, 3)
        plain = keras_ga.MetaModel.from_config(
            meta_model(linear_base()).get_config()
        )
        self.assertIsInstance(plain.inner_optimizer, inner_optimizers.SGD)
        self.assertIsInstance(
            inner_optimizers.get("adam"), inner_optimizers.Adam
        )

    def test_keras_save_and_load_keeps_the_carried_moments(self):
        opt = inner_optimizers.Adam(beta_1=0.9, moments="carry")
        model = meta_model(linear_base(), inner_optimizer=opt)
        ep = linear_episode(3, seed=10)
        model.train_on_batch(ep)
        path = os.path.join(tempfile.mkdtemp(), "meta.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertEqual(loaded.inner_optimizer.get_config(), opt.get_config())
        for a, b in zip(
            loaded.inner_optimizer_state, model.inner_optimizer_state
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        model.train_on_batch(ep)
        loaded.train_on_batch(ep)
        np.testing.assert_allclose(
            loaded.base.get_weights()[0],
            model.base.get_weights()[0],
            rtol=1e-12,
        )
        for a, b in zip(
            loaded.inner_optimizer_state, model.inner_optimizer_state
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


class ErrorTest(parameterized.TestCase):
    @parameterized.parameters(
        (
            {"beta_1": 1.0},
            r"`beta_1` must be a number in \[0, 1\). Received: beta_1=1.0",
        ),
        (
            {"beta_2": -0.1},
            r"`beta_2` must be a number in \[0, 1\). Received: beta_2=-0.1",
        ),
        (
            {"epsilon": 0.0},
            r"`epsilon` must be a positive finite number. Received: epsilon=0.0",
        ),
        (
            {"moments": "keep"},
            r"`moments` must be one of \['reset', 'carry'\]. Received: moments='keep'",
        ),
    )
    def test_bad_adam_arguments(self, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            inner_optimizers.Adam(**kwargs)

    def test_unknown_name(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`inner_optimizer` must be one of \['sgd', 'adam'\]. "
            r"Received: inner_optimizer='rmsprop'",
        ):
            keras_ga.MetaModel(linear_base(), inner_optimizer="rmsprop")

    def test_not_an_optimizer(self):
        with self.assertRaisesRegex(
            TypeError, r"`inner_optimizer` must be 'sgd', 'adam' or a"
        ):
            keras_ga.MetaModel(
                linear_base(), inner_optimizer=keras.optimizers.Adam()
            )


if __name__ == "__main__":
    absltest.main()
