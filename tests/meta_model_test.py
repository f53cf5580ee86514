"""Tests of MetaModel: meta-gradients, updates, BatchNorm, training, saving."""

import functools
import os
import tempfile
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from tests import conv_maml
from tests import support

D = 4  # input size of the linear-regression tasks


def linear_base():
    return support.linear_base(D)


linear_episode = functools.partial(support.linear_episode, dim=D)
mse_grad = support.mse_grad


def closed_form(theta, task, alpha, steps):
    """theta_k, the MAML meta-gradient and the first-order one, by hand."""
    sx, sy, qx, qy = (task[k] for k in keras_ga.EPISODE_KEYS)
    hessian = 2.0 / len(sx) * sx.T @ sx
    phi = theta
    for _ in range(steps):
        phi = phi - alpha * mse_grad(phi, sx, sy)
    g_query = mse_grad(phi, qx, qy)
    jac = np.linalg.matrix_power(np.eye(D) - alpha * hessian, steps)
    return phi, jac.T @ g_query, g_query


def task_of(ep, i):
    return {k: v[i] for k, v in ep.items()}


def make(algo, weighting="uniform", steps=2, alpha=0.05, optimizer=None, **kw):
    keras.utils.set_random_seed(1)
    model = keras_ga.MetaModel(
        linear_base(),
        algo=algo,
        weighting=weighting,
        inner_steps=steps,
        inner_learning_rate=alpha,
        **kw,
    )
    model.compile(optimizer=optimizer or keras.optimizers.SGD(1.0), loss="mse")
    return model


def eq13(g):
    scores = g @ g.sum(axis=0)
    return scores / np.abs(scores).sum()


class MetaGradientTest(parameterized.TestCase):
    @parameterized.product(steps=[1, 3], algo=["maml", "fomaml"])
    def test_per_task_gradient_matches_closed_form(self, steps, algo):
        model = make(algo, steps=steps)
        ep = linear_episode(3)
        theta = model.base.get_weights()[0]
        results = model.run_tasks(ep, training=True)
        for i in range(3):
            phi, maml, fomaml = closed_form(theta, task_of(ep, i), 0.05, steps)
            expected = maml if algo == "maml" else fomaml
            np.testing.assert_allclose(
                results.outer_grads[0][i].numpy(), expected, rtol=1e-9
            )
            np.testing.assert_allclose(
                results.updates[0][i].numpy(), theta - phi, rtol=1e-9
            )

    @parameterized.product(
        algo=["maml", "fomaml", "reptile"], weighting=["uniform", "agreement"]
    )
    def test_step_is_the_weighted_sum(self, algo, weighting):
        eps = 0.25  # exact in the optimizer's float32 learning rate
        # Full-batch inner steps, as the closed form takes them.
        model = make(
            algo,
            weighting,
            optimizer=keras.optimizers.SGD(eps),
            inner_batch_size=6,
        )
        ep = linear_episode(4, seed=3)
        theta = model.base.get_weights()[0]
        forms = [closed_form(theta, task_of(ep, i), 0.05, 2) for i in range(4)]
        phis = np.stack([f[0] for f in forms])
        g = (theta[None] - phis).reshape(4, -1)
        w = np.full(4, 0.25) if weighting == "uniform" else eq13(g)
        if algo == "reptile":
            # Paper line 10: theta + eps * sum_i w_i (theta_i - theta).
            expected = theta + eps * np.tensordot(w, phis - theta[None], 1)
        else:
            grads = np.stack([f[1] if algo == "maml" else f[2] for f in forms])
            expected = theta - eps * np.tensordot(w, grads, 1)
        model.train_on_batch(ep)
        np.testing.assert_allclose(
            model.base.get_weights()[0], expected, rtol=1e-9
        )

    @parameterized.parameters("maml", "fomaml", "reptile")
    def test_one_task_same_update_for_both_weightings(self, algo):
        ep = linear_episode(1, seed=5)
        after = []
        for weighting in ("uniform", "agreement"):
            model = make(algo, weighting, optimizer=keras.optimizers.SGD(0.1))
            model.train_on_batch(ep)
            after.append(model.base.get_weights()[0])
        np.testing.assert_allclose(after[0], after[1], rtol=1e-12)

    def test_reptile_sub_batches_partition_the_support_set(self):
        # 6 support examples, 3 steps: sub-batches of 2 that use every
        # example once, so a linear model's summed inner gradients equal
        # the full-batch gradient times 3 when the learning rate is tiny.
        model = make("reptile", steps=3, alpha=1e-7)
        ep = linear_episode(1, s=6, seed=7)
        theta = model.base.get_weights()[0]
        update = model.run_tasks(ep, training=True).updates[0][0].numpy()
        task = task_of(ep, 0)
        full = mse_grad(theta, task["support_x"], task["support_y"])
        np.testing.assert_allclose(update, 1e-7 * 3 * full, rtol=1e-5)
        one_batch = make("reptile", steps=3, alpha=1e-7, inner_batch_size=6)
        update = one_batch.run_tasks(ep, training=True).updates[0][0].numpy()
        np.testing.assert_allclose(update, 1e-7 * 3 * full, rtol=1e-5)


def post_adaptation_loss(base, theta, ep, alpha, steps, loss_fn):
    """An independent evaluation of L_query(theta_k(theta)), eagerly."""
    state = [v.value for v in base.non_trainable_variables]
    params = [tf.constant(t) for t in theta]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(params)
            out, _ = base.stateless_call(
                params, state, ep["support_x"][0], training=True
            )
            loss = loss_fn(ep["support_y"][0], out)
        grads = tape.gradient(loss, params)
        params = [p - alpha * g for p, g in zip(params, grads)]
    out, _ = base.stateless_call(params, state, ep["query_x"][0], training=True)
    return float(loss_fn(ep["query_y"][0], out))


class FiniteDifferenceTest(parameterized.TestCase):
    def _directional_errors(self, stock_bn, exact, fast_pool=False):
        keras.utils.set_random_seed(0)
        model, grads = conv_maml.maml_gradients(
            conv_maml.conv_base(stock_bn=stock_bn, fast_pool=fast_pool),
            exact=exact,
        )
        ep, loss_fn = conv_maml.conv_episode(), conv_maml.loss_fn()
        theta = [v.numpy() for v in model.base.trainable_variables]
        rng = np.random.default_rng(1)
        errors = []
        for _ in range(3):
            v = [rng.normal(size=t.shape) for t in theta]
            h = 1e-5
            plus = [t + h * d for t, d in zip(theta, v)]
            minus = [t - h * d for t, d in zip(theta, v)]
            fd = (
                post_adaptation_loss(model.base, plus, ep, 0.5, 2, loss_fn)
                - post_adaptation_loss(model.base, minus, ep, 0.5, 2, loss_fn)
            ) / (2 * h)
            analytic = sum(np.sum(g * d) for g, d in zip(grads, v))
            errors.append(abs(analytic - fd) / max(abs(fd), 1e-8))
        return errors

    def test_maml_matches_finite_differences_with_batchnorm_and_maxpool(self):
        errors = self._directional_errors(stock_bn=True, exact=True)
        self.assertLess(max(errors), 1e-6, errors)

    def test_maml_matches_finite_differences_with_keras_ga_maxpool(self):
        errors = self._directional_errors(
            stock_bn=True, exact=True, fast_pool=True
        )
        self.assertLess(max(errors), 1e-6, errors)

    def test_stock_batchnorm_second_order_is_wrong(self):
        # Documents why MetaModel swaps the layer: this must stay wrong for
        # the swap to be needed. If TensorFlow fixes tf.nn.moments, this
        # test fails and the swap can go.
        errors = self._directional_errors(stock_bn=True, exact=False)
        self.assertGreater(max(errors), 1e-3, errors)


def sine_dataset(n_tasks=8, batches=40, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batches, n_tasks, 1, 1)
    amp = rng.uniform(0.1, 5.0, shape)
    phase = rng.uniform(0, np.pi, shape)
    sx = rng.uniform(-5, 5, (batches, n_tasks, 10, 1))
    qx = rng.uniform(-5, 5, (batches, n_tasks, 10, 1))
    data = {
        "support_x": sx,
        "support_y": amp * np.sin(sx + phase),
        "query_x": qx,
        "query_y": amp * np.sin(qx + phase),
    }
    data = {k: v.astype("float32") for k, v in data.items()}
    return tf.data.Dataset.from_tensor_slices(data)


def mlp():
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


class TrainingTest(parameterized.TestCase):
    @parameterized.parameters(
        ("maml", "agreement", 0.01, keras.optimizers.Adam, 3e-3),
        ("fomaml", "uniform", 0.01, keras.optimizers.Adam, 3e-3),
        ("reptile", "agreement", 0.02, keras.optimizers.SGD, 0.5),
    )
    def test_sine_training_lowers_post_adaptation_loss(
        self, algo, weighting, alpha, opt, lr
    ):
        keras.utils.set_random_seed(0)
        model = keras_ga.MetaModel(
            mlp(),
            algo=algo,
            weighting=weighting,
            inner_steps=5 if algo == "reptile" else 1,
            inner_learning_rate=alpha,
        )
        model.compile(optimizer=opt(lr), loss="mse")
        test = sine_dataset(batches=4, seed=99)
        before = model.evaluate(test, verbose=0, return_dict=True)["loss"]
        model.fit(sine_dataset(), epochs=10, verbose=0)
        after = model.evaluate(test, verbose=0, return_dict=True)["loss"]
        self.assertLess(after, 0.5 * before, (before, after))

    def test_history_has_query_pre_and_weight_metrics(self):
        model = keras_ga.MetaModel(
            mlp(), algo="fomaml", inner_learning_rate=0.01
        )
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        history = model.fit(sine_dataset(batches=3), epochs=1, verbose=0)
        for key in (
            "loss",
            "mae",
            "pre_loss",
            "pre_mae",
            "weight_min",
            "weight_neg_frac",
        ):
            self.assertIn(key, history.history)
        logs = model.evaluate(
            sine_dataset(batches=2), verbose=0, return_dict=True
        )
        self.assertIn("pre_loss", logs)
        self.assertNotIn("weight_min", logs)


class BatchNormStateTest(absltest.TestCase):
    def test_moving_statistics_come_from_query_not_inner_loops(self):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.BatchNormalization(momentum=0.5),
                keras.layers.Dense(2),
            ]
        )
        model = keras_ga.MetaModel(
            base, algo="maml", inner_steps=3, inner_learning_rate=0.1
        )
        model.compile(optimizer="sgd", loss="mse")
        rng = np.random.default_rng(0)
        ep = {
            "support_x": rng.normal(10.0, 1.0, (4, 5, 3)).astype("float32"),
            "support_y": rng.normal(size=(4, 5, 2)).astype("float32"),
            "query_x": rng.normal(-3.0, 2.0, (4, 7, 3)).astype("float32"),
            "query_y": rng.normal(size=(4, 7, 2)).astype("float32"),
        }
        model.train_on_batch(ep)
        bn = model.base.layers[0]
        query_means = ep["query_x"].mean(axis=1).mean(axis=0)
        query_vars = ep["query_x"].var(axis=1).mean(axis=0)
        np.testing.assert_allclose(
            bn.moving_mean.numpy(), 0.5 * query_means, rtol=1e-5
        )
        np.testing.assert_allclose(
            bn.moving_variance.numpy(), 0.5 + 0.5 * query_vars, rtol=1e-5
        )

    def test_stock_layers_are_swapped(self):
        base = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(2),
            ]
        )
        weights = base.get_weights()
        model = keras_ga.MetaModel(base)
        self.assertIsInstance(
            model.base.layers[0], keras_ga.layers.BatchNormalization
        )
        for a, b in zip(weights, model.base.get_weights()):
            np.testing.assert_array_equal(a, b)


class AdaptAndSavingTest(absltest.TestCase):
    def _trained(self):
        keras.utils.set_random_seed(0)
        model = keras_ga.MetaModel(
            mlp(),
            algo="maml",
            weighting="agreement",
            inner_steps=2,
            inner_learning_rate=0.01,
        )
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        model.fit(sine_dataset(batches=3), epochs=1, verbose=0)
        return model

    def test_adapt_returns_adapted_copy(self):
        model = self._trained()
        ep = next(iter(sine_dataset(batches=1)))
        sx, sy = ep["support_x"][0], ep["support_y"][0]
        fast = model.adapt(sx, sy, steps=3)
        phi = [tf.constant(w.numpy()) for w in model.base.trainable_variables]
        x = tf.constant(sx)
        for _ in range(3):
            with tf.GradientTape() as tape:
                tape.watch(phi)
                out, _ = model.base.stateless_call(phi, [], x, training=True)
                loss = tf.reduce_mean(tf.square(out - sy))
            phi = [p - 0.01 * g for p, g in zip(phi, tape.gradient(loss, phi))]
        for a, b in zip(fast.trainable_variables, phi):
            np.testing.assert_allclose(
                a.numpy(), np.asarray(b), rtol=1e-5, atol=1e-7
            )
        self.assertIsNot(fast, model.base)
        self.assertFalse(
            np.allclose(
                fast.predict(sx, verbose=0), model.predict(sx, verbose=0)
            )
        )

    def test_config_round_trip(self):
        model = self._trained()
        again = keras_ga.MetaModel.from_config(model.get_config())
        self.assertEqual(again.get_config()["algo"], "maml")
        self.assertEqual(again.inner_steps, 2)
        self.assertIsInstance(again.weighting, keras_ga.AgreementWeighting)

    def test_keras_save_and_load(self):
        model = self._trained()
        x = np.linspace(-5, 5, 11, dtype="float32")[:, None]
        path = os.path.join(tempfile.mkdtemp(), "meta.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertIsInstance(loaded, keras_ga.MetaModel)
        np.testing.assert_array_equal(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        )
        self.assertEqual(loaded.inner_learning_rate, 0.01)
        # The optimizer state travelled: one more identical step on both.
        batch = next(iter(sine_dataset(batches=1)))
        model.train_on_batch(batch)
        loaded.train_on_batch(batch)
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5
        )


class ErrorTest(parameterized.TestCase):
    @parameterized.parameters(
        (
            {"algo": "anil"},
            ValueError,
            r"`algo` must be one of \['maml', 'fomaml', 'reptile'\]. Received: algo='anil'",
        ),
        (
            {"weighting": "softmax"},
            ValueError,
            r"`weighting` must be one of .* Received: weighting='softmax'",
        ),
        (
            {"inner_steps": 0},
            ValueError,
            r"`inner_steps` must be a positive integer. Received: inner_steps=0",
        ),
        ({"inner_steps": 1.5}, ValueError, r"Received: inner_steps=1.5"),
        (
            {"inner_learning_rate": -0.1},
            ValueError,
            r"`inner_learning_rate` must be a positive finite number. Received: inner_learning_rate=-0.1",
        ),
        (
            {"inner_learning_rate": float("nan")},
            ValueError,
            r"Received: inner_learning_rate=nan",
        ),
        (
            {"eval_inner_steps": -1},
            ValueError,
            r"Received: eval_inner_steps=-1",
        ),
        ({"inner_batch_size": 0}, ValueError, r"Received: inner_batch_size=0"),
    )
    def test_bad_arguments(self, kwargs, error, pattern):
        with self.assertRaisesRegex(error, pattern):
            keras_ga.MetaModel(mlp(), **kwargs)

    def test_unbuilt_model(self):
        with self.assertRaisesRegex(
            ValueError, r"`model` must be built.*Received"
        ):
            keras_ga.MetaModel(keras.Sequential([keras.layers.Dense(1)]))

    def test_not_a_model(self):
        with self.assertRaisesRegex(
            TypeError, r"`model` must be a keras.Model"
        ):
            keras_ga.MetaModel(keras.layers.Dense(1))

    def test_missing_loss(self):
        model = keras_ga.MetaModel(mlp())
        with self.assertRaisesRegex(ValueError, r"`loss` is required"):
            model.compile(optimizer="adam")

    def test_loss_weights_refused(self):
        model = keras_ga.MetaModel(mlp())
        with self.assertRaisesRegex(
            ValueError,
            r"does not support `loss_weights`.*Received: loss_weights=\[1.0\]",
        ):
            model.compile(optimizer="adam", loss="mse", loss_weights=[1.0])

    def test_mismatched_support_and_query(self):
        model = keras_ga.MetaModel(mlp(), inner_learning_rate=0.01)
        model.compile(optimizer="adam", loss="mse")
        ep = next(iter(sine_dataset(batches=1)))
        ep = dict(ep, query_x=tf.zeros([8, 10, 2]))
        with self.assertRaisesRegex(
            ValueError,
            r"`support_x` and `query_x` must have the same per-example shape",
        ):
            model.train_on_batch(ep)
        ep = dict(ep, query_x=tf.zeros([8, 9, 1]))
        with self.assertRaisesRegex(
            ValueError,
            r"`query_x` and `query_y` must have the same number of examples",
        ):
            model.train_on_batch(ep)

    def test_other_backend_is_refused(self):
        # This process runs TensorFlow (JAX runs in tests/jax_checks.py),
        # so the backend name is patched.
        with mock.patch.object(keras.backend, "backend", return_value="torch"):
            with self.assertRaisesRegex(
                RuntimeError,
                r"needs the TensorFlow or the JAX backend.*Received: "
                r"backend='torch'",
            ):
                keras_ga.MetaModel(mlp())


if __name__ == "__main__":
    absltest.main()
