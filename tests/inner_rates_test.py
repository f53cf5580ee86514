"""Tests of learned inner learning rates (Meta-SGD, MAML++'s LSLR)."""

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
from keras_ga import inner_rates
from tests import support

D = 3
LR = 0.05
MODES = inner_rates.MODES

linear_episode = functools.partial(support.linear_episode, dim=D)


def mlp_base():
    return support.tanh_base(D)


def meta_model(mode, algo="maml", steps=2, weighting="uniform", **kw):
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(
        mlp_base(),
        algo=algo,
        weighting=weighting,
        inner_steps=steps,
        inner_learning_rate=LR,
        learn_inner_rates=mode,
        **kw,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def spread_rates(model, seed=0):
    """Rates of different values, so that a mix-up of them shows."""
    rng = np.random.default_rng(seed)
    for rate in model.inner_rates:
        rate.assign(LR * rng.uniform(0.5, 1.5, size=rate.shape))


def hand_adapt(base, theta, rates, mode, x, y, steps):
    """theta_k and the inner gradients g_t of SGD with learned rates."""
    params, inner_grads = [tf.constant(t) for t in theta], []
    for t in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = support.stateless_mse(base, params, x, y)
        grads = tape.gradient(loss, params)
        inner_grads.append([g.numpy() for g in grads])
        sizes = [
            r if mode == "per_parameter" else r[min(t, len(r) - 1)]
            for r in rates
        ]
        params = [p - a * g for p, a, g in zip(params, sizes, grads)]
    return [p.numpy() for p in params], inner_grads


def post_adaptation_loss(base, theta, rates, mode, ep, steps):
    """L_query(theta_k(theta, rates)) of task 0, eagerly."""
    sx, sy, qx, qy = support.task(ep, 0)
    phi, _ = hand_adapt(base, theta, rates, mode, sx, sy, steps)
    return float(
        support.stateless_mse(base, [tf.constant(p) for p in phi], qx, qy)
    )


class MetaGradientTest(parameterized.TestCase):
    @parameterized.product(mode=MODES, only_rates=[False, True])
    def test_maml_matches_finite_differences(self, mode, only_rates):
        model = meta_model(mode, steps=2)
        spread_rates(model)
        ep = linear_episode(1, seed=3)
        results = model.run_tasks(ep, training=True)
        grads = [g[0].numpy() for g in results.outer_grads]
        rate_grads = [g[0].numpy() for g in results.rate_grads]
        theta, rates = (
            support.values(model.base.trainable_variables),
            support.values(model.inner_rates),
        )
        rng = np.random.default_rng(1)
        for _ in range(3):
            d = [rng.normal(size=t.shape) for t in theta]
            if only_rates:
                d = [np.zeros_like(t) for t in theta]
            e = [rng.normal(size=r.shape) * LR for r in rates]
            h = 1e-6

            def loss_at(sign, d=d, e=e, h=h):
                return post_adaptation_loss(
                    model.base,
                    [t + sign * h * u for t, u in zip(theta, d)],
                    [r + sign * h * u for r, u in zip(rates, e)],
                    mode,
                    ep,
                    2,
                )

            fd = (loss_at(1) - loss_at(-1)) / (2 * h)
            analytic = sum(np.sum(g * u) for g, u in zip(grads, d))
            analytic += sum(np.sum(g * u) for g, u in zip(rate_grads, e))
            self.assertLess(abs(analytic - fd) / abs(fd), 1e-6)

    @parameterized.parameters(*MODES)
    def test_first_order_rate_gradient_by_hand(self, mode):
        model = meta_model(mode, algo="fomaml", steps=3)
        spread_rates(model)
        ep = linear_episode(1, seed=4)
        results = model.run_tasks(ep, training=True)
        theta, rates = (
            support.values(model.base.trainable_variables),
            support.values(model.inner_rates),
        )
        sx, sy, qx, qy = support.task(ep, 0)
        phi, inner = hand_adapt(model.base, theta, rates, mode, sx, sy, 3)
        phi = [tf.constant(p) for p in phi]
        with tf.GradientTape() as tape:
            tape.watch(phi)
            loss = support.stateless_mse(model.base, phi, qx, qy)
        query_grads = [g.numpy() for g in tape.gradient(loss, phi)]
        for i, got in enumerate(results.rate_grads):
            per_step = [-query_grads[i] * g[i] for g in inner]
            if mode == "per_parameter":
                want = sum(per_step)
            else:
                want = np.array([np.sum(s) for s in per_step])
            np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-9)
        for got, want in zip(results.outer_grads, query_grads):
            np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-9)

    @parameterized.parameters("maml", "fomaml")
    def test_outer_step_weights_the_rates_as_the_weights(self, algo):
        model = meta_model(
            "per_layer_per_step", algo=algo, weighting="agreement"
        )
        ep = linear_episode(4, seed=5)
        results = model.run_tasks(ep, training=True)
        weights = model.weighting(results.updates).numpy()
        self.assertGreater(np.ptp(weights), 1e-3)  # not uniform
        before = support.values(model.inner_rates)
        model.train_on_batch(ep)
        for old, new, g in zip(
            before, support.values(model.inner_rates), results.rate_grads
        ):
            # Keras' SGD keeps its learning rate in float32.
            lr = float(np.float32(0.1))
            want = old - lr * np.tensordot(weights, g.numpy(), axes=1)
            np.testing.assert_allclose(new, want, rtol=1e-9)
            self.assertGreater(np.abs(new - old).max(), 0.0)


class AdaptationTest(parameterized.TestCase):
    @parameterized.parameters(*MODES)
    def test_adapt_and_evaluate_use_the_learned_rates(self, mode):
        model = meta_model(mode, steps=2)
        spread_rates(model, seed=2)
        ep = linear_episode(2, seed=6)
        theta, rates = (
            support.values(model.base.trainable_variables),
            support.values(model.inner_rates),
        )
        sx, sy, qx, qy = support.task(ep, 0)
        # Three steps: LSLR keeps its last rate for the third.
        phi, _ = hand_adapt(model.base, theta, rates, mode, sx, sy, 3)
        fast = model.adapt(sx, sy, steps=3)
        for got, want in zip(support.values(fast.trainable_variables), phi):
            np.testing.assert_allclose(got, want, rtol=1e-10)
        pred = model.adapt_and_predict(sx, sy, qx, steps=3)
        np.testing.assert_allclose(pred.numpy(), fast(qx).numpy(), rtol=1e-10)
        phi, _ = hand_adapt(model.base, theta, rates, mode, sx, sy, 2)
        want = float(
            support.stateless_mse(
                model.base, [tf.constant(p) for p in phi], qx, qy
            )
        )
        results = model.run_tasks(ep, training=False)
        self.assertAlmostEqual(float(results.loss[0]), want, places=10)
        for g in results.rate_grads:
            np.testing.assert_array_equal(g.numpy(), 0.0)
        logs = model.evaluate(ep, verbose=0, return_dict=True)
        self.assertAlmostEqual(
            logs["loss"], float(np.mean(results.loss)), places=5
        )

    @parameterized.product(mode=MODES, algo=["maml", "fomaml"])
    def test_initial_rates_step_as_the_fixed_step_size(self, mode, algo):
        ep = linear_episode(2, seed=8)
        fixed = meta_model(None, algo=algo).run_tasks(ep, training=True)
        learned = meta_model(mode, algo=algo).run_tasks(ep, training=True)
        for field in ("updates", "outer_grads"):
            for a, b in zip(getattr(fixed, field), getattr(learned, field)):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)

    def test_none_keeps_the_fixed_step_size(self):
        model = meta_model(None)
        self.assertEqual(model.inner_rates, [])
        self.assertIsNone(model.get_config()["learn_inner_rates"])
        results = model.run_tasks(linear_episode(2), training=True)
        self.assertEqual(results.rate_grads, [])


class SavingTest(parameterized.TestCase):
    @parameterized.parameters(*MODES)
    def test_config_round_trip(self, mode):
        model = meta_model(mode, steps=3)
        config = model.get_config()
        self.assertEqual(config["learn_inner_rates"], mode)
        again = keras_ga.MetaModel.from_config(config)
        self.assertEqual(again.learn_inner_rates, mode)
        self.assertEqual(
            [tuple(r.shape) for r in again.inner_rates],
            [tuple(r.shape) for r in model.inner_rates],
        )
        for rate in support.values(again.inner_rates):
            np.testing.assert_array_equal(rate, LR)

    @parameterized.parameters(*MODES)
    def test_keras_file_restores_the_rates(self, mode):
        model = meta_model(mode, algo="fomaml", steps=2)
        ep = linear_episode(2, seed=7)
        model.train_on_batch(ep)
        path = os.path.join(tempfile.mkdtemp(), "meta.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertEqual(loaded.learn_inner_rates, mode)
        for a, b in zip(
            support.values(loaded.inner_rates),
            support.values(model.inner_rates),
        ):
            np.testing.assert_array_equal(a, b)
        self.assertGreater(
            np.abs(support.values(loaded.inner_rates)[0] - LR).max(), 0
        )
        sx, sy, _, _ = support.task(ep, 1)
        for a, b in zip(
            support.values(loaded.adapt(sx, sy).trainable_variables),
            support.values(model.adapt(sx, sy).trainable_variables),
        ):
            np.testing.assert_array_equal(a, b)
        # The outer optimizer's slots of the rates travelled too.
        model.train_on_batch(ep)
        loaded.train_on_batch(ep)
        for a, b in zip(
            support.values(loaded.inner_rates),
            support.values(model.inner_rates),
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12)


class ErrorTest(parameterized.TestCase):
    @parameterized.parameters(
        (
            {"learn_inner_rates": "meta_sgd"},
            r"`learn_inner_rates` must be one of \[None, 'per_layer_per_step', "
            r"'per_parameter'\]. Received: learn_inner_rates='meta_sgd'",
        ),
        (
            {"learn_inner_rates": True},
            r"`learn_inner_rates` must be one of .* "
            r"Received: learn_inner_rates=True",
        ),
        (
            {"learn_inner_rates": "per_parameter", "algo": "reptile"},
            r"`learn_inner_rates` needs an algorithm whose outer gradient "
            r"reaches the inner learning rates .* Received: "
            r"learn_inner_rates='per_parameter', algo='reptile'",
        ),
        (
            {
                "learn_inner_rates": "per_layer_per_step",
                "inner_optimizer": "adam",
            },
            r"`learn_inner_rates` needs `inner_optimizer='sgd'`.* Received: "
            r"learn_inner_rates='per_layer_per_step', inner_optimizer=Adam\(",
        ),
    )
    def test_bad_arguments(self, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            keras_ga.MetaModel(mlp_base(), **kwargs)

    def test_a_rule_without_rate_gradients_is_refused(self):
        class NoRates(keras_ga.algorithms.Algorithm):
            name = "no_rates_for_inner_rates_test"

            def train(self, theta, learner):
                raise NotImplementedError

        registry = {NoRates.name: NoRates}
        with (
            mock.patch.dict(keras_ga.algorithms._REGISTRY, registry),
            self.assertRaisesRegex(
                ValueError,
                r"Received: learn_inner_rates='per_parameter', "
                r"algo='no_rates_for_inner_rates_test'",
            ),
        ):
            keras_ga.MetaModel(
                mlp_base(),
                algo=NoRates.name,
                learn_inner_rates="per_parameter",
            )


if __name__ == "__main__":
    absltest.main()
