"""Tests of per-phase settings: training and test shots, eval batch size."""

import keras
import numpy as np
from absl.testing import absltest

import keras_ga
from keras_ga import _adaptation

D = 3


def sine_mlp(**kwargs):
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model = keras_ga.MetaModel(base, inner_learning_rate=0.01, **kwargs)
    model.compile(optimizer="adam", loss="mse")
    return model


def linear_model(**kwargs):
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((D,), dtype="float64"),
            keras.layers.Dense(1, use_bias=False, dtype="float64"),
        ]
    )
    model = keras_ga.MetaModel(
        base, inner_learning_rate=0.1, weighting="uniform", **kwargs
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def linear_episode(s=6, q=4, seed=0):
    rng = np.random.default_rng(seed)
    sx, qx = rng.normal(size=(1, s, D)), rng.normal(size=(1, q, D))
    w = rng.normal(size=(D, 1))
    return {
        "support_x": sx,
        "support_y": sx @ w,
        "query_x": qx,
        "query_y": qx @ w,
    }


class ShotsTest(absltest.TestCase):
    def test_fit_on_ten_shot_tasks_and_evaluate_on_one_shot_tasks(self):
        # Reptile's configuration: train shots 10, test shots 1, a training
        # inner batch of 5 and an eval inner batch of 1.
        model = sine_mlp(
            algo="reptile",
            inner_steps=4,
            eval_inner_steps=6,
            inner_batch_size=5,
            eval_inner_batch_size=1,
            inner_optimizer=keras_ga.inner_optimizers.Adam(moments="carry"),
        )
        train = keras_ga.datasets.sine_tasks(
            shots=10, queries=5, meta_batch_size=2, seed=0, num_tasks=4
        )
        test = keras_ga.datasets.sine_tasks(
            shots=1, queries=5, meta_batch_size=2, seed=1, num_tasks=4
        )
        history = model.fit(train, validation_data=test, epochs=2, verbose=0)
        for key in ("loss", "val_loss", "val_pre_loss"):
            self.assertLen(history.history[key], 2)
            self.assertTrue(np.all(np.isfinite(history.history[key])), key)
        for protocol in keras_ga.protocols.PROTOCOLS:
            result = keras_ga.evaluate_tasks(
                model, test, protocol=protocol, verbose=0
            )
            self.assertEqual(result.num_tasks, 4)
            self.assertTrue(np.isfinite(result.mean))
        ep = next(iter(test))
        results = model.run_tasks(ep, training=False)
        self.assertEqual(results.predictions.shape, (2, 5, 1))


class EvalInnerBatchSizeTest(absltest.TestCase):
    def _eval_update(self, **kwargs):
        model = linear_model(algo="reptile", inner_steps=3, **kwargs)
        ep = linear_episode()
        update = model.run_tasks(ep, training=False, steps=1).updates[0]
        theta = model.base.get_weights()[0]
        return update[0].numpy(), theta, ep

    def test_eval_batch_sets_the_support_examples_of_a_test_step(self):
        full, theta, ep = self._eval_update(
            inner_batch_size=2, eval_inner_batch_size=6
        )
        x, y = ep["support_x"][0], ep["support_y"][0]
        grad = 2.0 / 6 * x.T @ (x @ theta - y)
        np.testing.assert_allclose(full, 0.1 * grad, rtol=1e-10)
        # Without it, evaluation follows `inner_batch_size` (2 examples).
        default, _, _ = self._eval_update(inner_batch_size=2)
        self.assertGreater(np.abs(default - full).max(), 1e-3)
        model = linear_model(
            algo="reptile", inner_batch_size=2, eval_inner_batch_size=4
        )
        self.assertEqual(
            _adaptation.inner_batch_size(model, 6, training=True), 2
        )
        self.assertEqual(
            _adaptation.inner_batch_size(model, 6, training=False), 4
        )
        self.assertEqual(
            _adaptation.inner_batch_size(model, 3, training=False), 3
        )
        again = keras_ga.MetaModel.from_config(model.get_config())
        self.assertEqual(again.eval_inner_batch_size, 4)

    def test_bad_eval_batch(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`eval_inner_batch_size` must be a positive integer. "
            r"Received: eval_inner_batch_size=0",
        ):
            linear_model(eval_inner_batch_size=0)


if __name__ == "__main__":
    absltest.main()
