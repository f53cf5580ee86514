"""Tests of per-step BatchNorm (MAML++'s BNRS and BNWB).

`keras_ga.layers.BatchNormalization(steps=k, per_step_weights=...)` keeps
one row of moving statistics (and of scale and offset) per inner step;
`keras_ga.batch_norm.inner_step(t)` says which row a pass uses.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import batch_norm
from tests import support

STEPS, UNITS, DIM = 3, 4, 3


def per_step_base(dtype="float32", per_step_weights=True, momentum=0.5):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((DIM,), dtype=dtype),
            keras.layers.Dense(UNITS, dtype=dtype, name="dense"),
            keras_ga.layers.BatchNormalization(
                steps=STEPS,
                per_step_weights=per_step_weights,
                momentum=momentum,
                dtype=dtype,
                name="bn",
            ),
            keras.layers.Activation("tanh", dtype=dtype),
            keras.layers.Dense(1, dtype=dtype, name="out"),
        ]
    )


def episode(n=2, s=6, q=5, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    ep = {
        "support_x": rng.normal(size=(n, s, DIM)),
        "support_y": rng.normal(size=(n, s, 1)),
        "query_x": rng.normal(size=(n, q, DIM)),
        "query_y": rng.normal(size=(n, q, 1)),
    }
    return {k: v.astype(dtype) for k, v in ep.items()}


def meta(base, algo="maml", steps=STEPS, **kwargs):
    model = keras_ga.MetaModel(
        base,
        algo=algo,
        inner_steps=steps,
        inner_learning_rate=0.1,
        **kwargs,
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


class LayerTest(parameterized.TestCase):
    def layer(self, **kwargs):
        layer = keras_ga.layers.BatchNormalization(
            steps=STEPS, momentum=0.9, **kwargs
        )
        layer.build((None, UNITS))
        return layer

    def test_weights_have_one_row_per_step(self):
        shapes = {w.name: tuple(w.shape) for w in self.layer().weights}
        self.assertEqual(shapes["moving_mean"], (STEPS, UNITS))
        self.assertEqual(shapes["moving_variance"], (STEPS, UNITS))
        self.assertEqual(shapes["gamma"], (UNITS,))
        both = self.layer(per_step_weights=True)
        shapes = {w.name: tuple(w.shape) for w in both.weights}
        self.assertEqual(shapes["gamma"], (STEPS, UNITS))
        self.assertEqual(shapes["beta"], (STEPS, UNITS))

    def test_training_pass_moves_only_the_row_of_its_step(self):
        layer = self.layer()
        x = np.random.default_rng(0).normal(size=(8, UNITS))
        x = x.astype("float32")
        with batch_norm.inner_step(1):
            layer(x, training=True)
        mean = layer.moving_mean.numpy()
        variance = layer.moving_variance.numpy()
        # The blend of the stock layer (momentum 0.9) on row 1 alone.
        np.testing.assert_allclose(mean[1], 0.1 * x.mean(0), rtol=1e-5)
        np.testing.assert_allclose(variance[1], 0.9 + 0.1 * x.var(0), rtol=1e-5)
        np.testing.assert_array_equal(mean[[0, 2]], 0.0)
        np.testing.assert_array_equal(variance[[0, 2]], 1.0)

    def test_inference_normalises_with_the_rows_of_its_step(self):
        layer = self.layer(per_step_weights=True)
        rng = np.random.default_rng(1)
        rows = {
            w.name: rng.uniform(0.5, 2.0, size=w.shape).astype("float32")
            for w in layer.weights
        }
        for w in layer.weights:
            w.assign(rows[w.name])
        x = rng.normal(size=(5, UNITS)).astype("float32")
        for t in range(STEPS):
            with batch_norm.inner_step(t):
                got = layer(x, training=False).numpy()
            want = (x - rows["moving_mean"][t]) / np.sqrt(
                rows["moving_variance"][t] + layer.epsilon
            ) * rows["gamma"][t] + rows["beta"][t]
            np.testing.assert_allclose(got, want, rtol=1e-5)
        # Outside an inner loop, and past the last row: the last row.
        want_last = layer(x, training=False).numpy()
        with batch_norm.inner_step(STEPS + 4):
            np.testing.assert_allclose(
                layer(x, training=False).numpy(), want_last
            )
        with batch_norm.inner_step(STEPS - 1):
            np.testing.assert_allclose(
                layer(x, training=False).numpy(), want_last
            )

    def test_config_round_trip(self):
        layer = self.layer(per_step_weights=True)
        clone = keras_ga.layers.BatchNormalization.from_config(
            layer.get_config()
        )
        self.assertEqual(clone.steps, STEPS)
        self.assertTrue(clone.per_step_weights)
        plain = keras_ga.layers.BatchNormalization()
        self.assertNotIn("steps", plain.get_config())

    def test_bad_arguments_are_refused(self):
        with self.assertRaisesRegex(
            ValueError, r"`steps` must be .*Received: steps=0"
        ):
            keras_ga.layers.BatchNormalization(steps=0)
        with self.assertRaisesRegex(
            ValueError, r"`per_step_weights=True` needs `steps`"
        ):
            keras_ga.layers.BatchNormalization(per_step_weights=True)
        with self.assertRaisesRegex(ValueError, r"renormalization"):
            keras_ga.layers.BatchNormalization(steps=2, renorm=True)


class MetaModelTest(parameterized.TestCase):
    @parameterized.product(
        algo=["maml", "fomaml", "reptile"],
        execution=["map", "vectorized"],
    )
    def test_each_inner_step_moves_its_own_row(self, algo, execution):
        base = per_step_base()
        model = meta(base, algo=algo, task_execution=execution)
        model.train_on_batch(episode())
        mean = base.get_layer("bn").moving_mean.numpy()
        for t in range(STEPS):
            self.assertGreater(np.abs(mean[t]).max(), 1e-3, f"row {t}")
        # The rows hold different statistics: each step's features differ.
        self.assertGreater(np.abs(mean[0] - mean[-1]).max(), 1e-4)

    def test_per_step_weights_adapt_their_own_row(self):
        # One inner step of 3 rows: only row 0 adapts; the query pass after
        # it uses row 0 too, so rows 1 and 2 get no gradient.
        base = per_step_base()
        model = meta(base, steps=1)
        before = base.get_layer("bn").gamma.numpy()
        model.train_on_batch(episode())
        after = base.get_layer("bn").gamma.numpy()
        self.assertGreater(np.abs(after[0] - before[0]).max(), 1e-6)
        np.testing.assert_array_equal(after[1:], before[1:])

    def test_maml_meta_gradient_matches_finite_differences(self):
        base = per_step_base(dtype="float64")
        model = meta(base, steps=STEPS)
        ep = episode(n=1, dtype="float64")
        results = model.run_tasks(ep, training=True)
        grads = [g[0].numpy() for g in results.outer_grads]
        theta = support.values(base.trainable_variables)
        state = [
            tf.constant(v) for v in support.values(base.non_trainable_variables)
        ]
        sx, sy, qx, qy = support.task(ep, 0)

        def mse(params, x, y):
            out, _ = base.stateless_call(params, state, x, training=True)
            return tf.reduce_mean(tf.square(out - y))

        def loss_at(point):
            # The inner loop by hand: step t normalises with rows t.
            phi = [tf.constant(p) for p in point]
            for t in range(STEPS):
                with tf.GradientTape() as tape:
                    tape.watch(phi)
                    with batch_norm.inner_step(t):
                        loss = mse(phi, sx, sy)
                phi = [
                    p - 0.1 * g for p, g in zip(phi, tape.gradient(loss, phi))
                ]
            with batch_norm.inner_step(STEPS - 1):
                return float(mse(phi, qx, qy))

        self.assertAlmostEqual(float(results.loss[0]), loss_at(theta), 10)
        support.assert_matches_finite_differences(self, loss_at, theta, grads)

    def test_moving_statistics_protocol_uses_the_last_steps_row(self):
        base = per_step_base(per_step_weights=False)
        model = meta(base, steps=2)
        ep = episode()
        bn = base.get_layer("bn")

        def predictions():
            return model.run_tasks(
                ep, training=False, protocol="moving_stats"
            ).predictions.numpy()

        first = predictions()
        mean = bn.moving_mean.numpy()
        mean[0] += 5.0  # a row the query pass after 2 steps does not use
        bn.moving_mean.assign(mean)
        np.testing.assert_allclose(predictions(), first, rtol=1e-6)
        mean[1] += 5.0  # the row of step 2
        bn.moving_mean.assign(mean)
        self.assertGreater(np.abs(predictions() - first).max(), 1e-2)

    def test_more_inner_steps_than_rows_are_refused(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`inner_steps` must be at most the `steps` of the model's "
            r"per-step BatchNormalization layers .* 3. Received: "
            r"inner_steps=4",
        ):
            meta(per_step_base(), steps=4)
        with self.assertRaisesRegex(
            ValueError, r"Received: eval_inner_steps=5"
        ):
            meta(per_step_base(), steps=2, eval_inner_steps=5)

    def test_anil_runs_a_per_step_body_at_every_step(self):
        model = meta(per_step_base(), adapt_layers=["out"])
        self.assertTrue(model._partition.random_body)
        self.assertFalse(model._partition.reuses_body(6, 6))

    def test_save_and_load_keep_the_rows(self):
        base = per_step_base()
        model = meta(base)
        model.train_on_batch(episode())
        path = os.path.join(tempfile.mkdtemp(), "per_step.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        bn = loaded.base.get_layer("bn")
        self.assertEqual(bn.steps, STEPS)
        self.assertTrue(bn.per_step_weights)
        for a, b in zip(base.get_layer("bn").weights, bn.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        ep = episode(seed=4)
        np.testing.assert_allclose(
            loaded.run_tasks(ep, training=False).predictions.numpy(),
            model.run_tasks(ep, training=False).predictions.numpy(),
            rtol=1e-6,
        )


if __name__ == "__main__":
    absltest.main()
