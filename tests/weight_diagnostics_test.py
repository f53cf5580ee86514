"""Tests of the weight diagnostics: the weights against a per-task quantity."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import agreement

D = 4


def linear_base():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((D,), dtype="float64"),
            keras.layers.Dense(1, use_bias=False, dtype="float64"),
        ]
    )


def linear_episode(n=6, s=6, q=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, D, 1)) * rng.uniform(0.2, 3.0, size=(n, 1, 1))
    sx, qx = rng.normal(size=(n, s, D)), rng.normal(size=(n, q, D))
    return {
        "support_x": sx,
        "support_y": sx @ w,
        "query_x": qx,
        "query_y": qx @ w,
    }


def eq13(g):
    scores = g @ g.sum(axis=0)
    return scores / np.abs(scores).sum()


def sine_amplitude(episode):
    """The amplitude A of y = A sin(x - phase), by least squares.

    y = a sin(x) + b cos(x) with A = sqrt(a^2 + b^2), exact for noiseless
    sine tasks with at least two distinct points.
    """
    x = tf.concat([episode["support_x"], episode["query_x"]], axis=1)
    y = tf.concat([episode["support_y"], episode["query_y"]], axis=1)
    x, y = tf.cast(x[..., 0], tf.float64), tf.cast(y[..., 0], tf.float64)
    s, c = tf.sin(x), tf.cos(x)
    # The 2 x 2 normal equations, solved by hand (XLA has no lstsq).
    ss, cc, sc = (
        tf.reduce_sum(u * v, axis=1) for u, v in ((s, s), (c, c), (s, c))
    )
    sy, cy = tf.reduce_sum(s * y, axis=1), tf.reduce_sum(c * y, axis=1)
    det = ss * cc - sc * sc
    a = (cc * sy - sc * cy) / det
    b = (ss * cy - sc * sy) / det
    return tf.sqrt(a * a + b * b)


def model_with(diagnostics, base=None, algo="fomaml", lr=0.05):
    model = keras_ga.MetaModel(
        base or linear_base(),
        algo=algo,
        weighting="agreement",
        inner_steps=2,
        inner_learning_rate=lr,
        weight_diagnostics=diagnostics,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


class WeightStatisticsTest(absltest.TestCase):
    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        w, q = rng.normal(size=7), rng.uniform(size=7)
        stats = agreement.weight_statistics(tf.constant(w), tf.constant(q))
        self.assertAlmostEqual(
            float(stats["weight_corr"]), np.corrcoef(w, q)[0, 1], places=12
        )
        self.assertAlmostEqual(float(stats["weight_std"]), np.std(w), 12)
        self.assertAlmostEqual(float(stats["weight_max"]), w.max(), 12)
        self.assertAlmostEqual(float(stats["weight_min"]), w.min(), 12)
        self.assertAlmostEqual(
            float(stats["weight_neg_frac"]), np.mean(w < 0), 12
        )

    def test_constant_quantity_gives_zero_correlation(self):
        stats = agreement.weight_statistics(
            tf.constant([0.1, 0.5, 0.4]), tf.ones([3])
        )
        self.assertEqual(float(stats["weight_corr"]), 0.0)

    def test_update_norms(self):
        g = [tf.constant([[3.0, 0.0], [1.0, 1.0]]), tf.constant([[4.0], [1.0]])]
        np.testing.assert_allclose(
            agreement.update_norms(g).numpy(), [5.0, np.sqrt(3.0)]
        )


class MetaModelDiagnosticsTest(parameterized.TestCase):
    def test_update_norm_correlation_is_logged(self):
        model = model_with("update_norm")
        ep = linear_episode()
        g = model.run_tasks(ep, training=True).updates[0].numpy()
        g = g.reshape(len(g), -1)
        w = eq13(g)
        norms = np.linalg.norm(g, axis=1)
        logs = model.train_on_batch(ep, return_dict=True)
        self.assertAlmostEqual(
            logs["weight_corr"], np.corrcoef(w, norms)[0, 1], places=5
        )
        self.assertAlmostEqual(logs["weight_std"], np.std(w), places=6)
        self.assertAlmostEqual(logs["weight_max"], w.max(), places=6)
        self.assertAlmostEqual(logs["weight_min"], w.min(), places=6)
        self.assertAlmostEqual(logs["weight_neg_frac"], np.mean(w < 0), 6)
        eval_logs = model.evaluate(ep, verbose=0, return_dict=True)
        self.assertNotIn("weight_corr", eval_logs)

    def test_a_function_of_the_episode_gives_the_quantity(self):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((1,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(1),
            ]
        )
        model = model_with(sine_amplitude, base=base, algo="maml", lr=0.01)
        data = keras_ga.datasets.sine_tasks(
            shots=10,
            queries=10,
            meta_batch_size=8,
            seed=3,
            num_tasks=8,
            return_params=True,
        )
        ep, params = next(iter(data))
        amplitude = params["amplitude"].numpy()
        np.testing.assert_allclose(
            sine_amplitude(ep).numpy(), amplitude, rtol=1e-4
        )
        g = model.run_tasks(ep, training=True).updates
        g = np.concatenate([u.numpy().reshape(8, -1) for u in g], axis=1)
        w = eq13(g.astype(np.float64))
        logs = model.train_on_batch(ep, return_dict=True)
        self.assertAlmostEqual(
            logs["weight_corr"], np.corrcoef(w, amplitude)[0, 1], places=4
        )

    def test_off_by_default(self):
        model = model_with(None)
        logs = model.train_on_batch(linear_episode(), return_dict=True)
        self.assertNotIn("weight_corr", logs)
        self.assertIn("weight_min", logs)

    def test_config_round_trip(self):
        model = model_with("update_norm")
        again = keras_ga.MetaModel.from_config(model.get_config())
        self.assertEqual(again.weight_diagnostics, "update_norm")

    def test_bad_value(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`weight_diagnostics` must be None, one of \['update_norm'\] or "
            r"a function episode -> \[N\]. Received: "
            r"weight_diagnostics='amplitude'",
        ):
            model_with("amplitude")


if __name__ == "__main__":
    absltest.main()
