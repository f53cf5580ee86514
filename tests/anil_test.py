"""Tests of ANIL, `MetaModel(adapt_layers=...)` (keras_ga.anil)."""

import functools
import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import _adaptation
from tests import support

D = 3
LR = 0.05

linear_episode = functools.partial(support.linear_episode, dim=D)


def deep_base():
    """A seeded float64 MLP `[D] -> 5 tanh -> 4 tanh -> [1]`."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((D,), dtype="float64"),
            keras.layers.Dense(
                5, activation="tanh", name="h1", dtype="float64"
            ),
            keras.layers.Dense(
                4, activation="tanh", name="h2", dtype="float64"
            ),
            keras.layers.Dense(1, name="out", dtype="float64"),
        ]
    )


def functional_copy(model):
    """The same layers and weights as a functional model (not split)."""
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        x = layer.__class__.from_config(layer.get_config())(x)
    copy = keras.Model(inputs, x)
    copy.set_weights(model.get_weights())
    return copy


def meta_model(base, adapt_layers=("out",), algo="maml", steps=2, **kw):
    kw.setdefault("weighting", "uniform")
    model = keras_ga.MetaModel(
        base,
        algo=algo,
        inner_steps=steps,
        inner_learning_rate=LR,
        adapt_layers=None if adapt_layers is None else list(adapt_layers),
        **kw,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def hand_adapt(base, theta, adapted, x, y, steps):
    """theta_k of inner SGD on the weights whose indices are `adapted`."""
    params = [tf.constant(t) for t in theta]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = support.stateless_mse(base, params, x, y)
        grads = tape.gradient(loss, params)
        params = [
            p - LR * g if i in adapted else p
            for i, (p, g) in enumerate(zip(params, grads))
        ]
    return params


class PartitionTest(parameterized.TestCase):
    def test_sequential_model_splits_before_the_first_adapting_layer(self):
        base = deep_base()
        part = meta_model(base, ("out",))._partition
        self.assertEqual(part.adapted, (4, 5))
        self.assertEqual(
            [layer.name for layer in part.body.layers], ["h1", "h2"]
        )
        self.assertEqual([layer.name for layer in part.head.layers], ["out"])
        self.assertEqual(part.body_theta, (0, 1, 2, 3))
        self.assertEqual(part.head_theta, (4, 5))
        self.assertTrue(part.reuses_body(3, 6))

    def test_layers_between_adapting_ones_stay_in_the_head(self):
        part = meta_model(deep_base(), ("h2",))._partition
        self.assertEqual(part.adapted, (2, 3))
        self.assertEqual(part.head_theta, (2, 3, 4, 5))

    def test_functional_model_is_not_split(self):
        part = meta_model(functional_copy(deep_base()))._partition
        self.assertIsNone(part.body)
        self.assertFalse(part.reuses_body(6, 6))

    def test_batch_statistics_body_is_reused_only_on_the_whole_support(self):
        base = keras_ga.conv4(
            (8, 8, 1), 3, filters=4, blocks=2, downsample="stride"
        )
        part = meta_model(base, ("logits",))._partition
        self.assertTrue(part.batch_statistics_body)
        self.assertTrue(part.reuses_body(6, 6))
        self.assertFalse(part.reuses_body(3, 6))

    def test_random_body_is_not_reused(self):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((D,)),
                keras.layers.Dense(4, name="h1"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1, name="out"),
            ]
        )
        part = meta_model(base)._partition
        self.assertTrue(part.random_body)
        self.assertFalse(part.reuses_body(6, 6))


class MetaGradientTest(parameterized.TestCase):
    @parameterized.product(
        functional=[False, True], adapt_layers=[("out",), ("h2", "out")]
    )
    def test_maml_matches_finite_differences(self, functional, adapt_layers):
        base = deep_base()
        if functional:
            base = functional_copy(base)
        model = meta_model(base, adapt_layers, steps=2)
        adapted = set(model._partition.adapted)
        ep = linear_episode(1, seed=3)
        results = model.run_tasks(ep, training=True)
        grads = [g[0].numpy() for g in results.outer_grads]
        theta = support.values(base.trainable_variables)
        sx, sy, qx, qy = support.task(ep, 0)

        def loss_at(point):
            phi = hand_adapt(base, point, adapted, sx, sy, 2)
            return float(support.stateless_mse(base, phi, qx, qy))

        self.assertAlmostEqual(
            float(results.loss[0]), loss_at(theta), places=12
        )
        support.assert_matches_finite_differences(self, loss_at, theta, grads)
        # The body's weights do not adapt, but the meta-gradient reaches
        # them (through the support features of the head's inner steps).
        for i, g in enumerate(grads):
            self.assertGreater(np.abs(g).max(), 0.0, msg=f"weight {i}")
        for i, update in enumerate(results.updates):
            if i not in adapted:
                np.testing.assert_array_equal(update.numpy(), 0.0)

    def test_first_order_gradient_is_the_query_gradient_at_theta_i(self):
        base = deep_base()
        model = meta_model(base, algo="fomaml", steps=3)
        adapted = set(model._partition.adapted)
        ep = linear_episode(1, seed=4)
        results = model.run_tasks(ep, training=True)
        sx, sy, qx, qy = support.task(ep, 0)
        phi = hand_adapt(
            base, support.values(base.trainable_variables), adapted, sx, sy, 3
        )
        with tf.GradientTape() as tape:
            tape.watch(phi)
            loss = support.stateless_mse(base, phi, qx, qy)
        for got, want in zip(results.outer_grads, tape.gradient(loss, phi)):
            np.testing.assert_allclose(got[0].numpy(), want.numpy(), rtol=1e-10)

    @parameterized.product(
        algo=["maml", "fomaml"],
        batch=[None, 3],
        task_execution=["map", "vectorized"],
    )
    def test_cached_body_gives_the_whole_model_results(
        self, algo, batch, task_execution
    ):
        """Sequential (body once per task) == functional (every step)."""
        ep = linear_episode(3, seed=5)
        split = meta_model(
            deep_base(),
            algo=algo,
            inner_batch_size=batch,
            task_execution=task_execution,
            weighting="agreement",
        )
        whole = meta_model(
            functional_copy(deep_base()),
            algo=algo,
            inner_batch_size=batch,
            task_execution=task_execution,
            weighting="agreement",
        )
        self.assertTrue(split._partition.reuses_body(batch or 6, 6))
        a = split.run_tasks(ep, training=True)
        b = whole.run_tasks(ep, training=True)
        for x, y in zip(
            [*a.outer_grads, *a.updates, a.loss, a.predictions],
            [*b.outer_grads, *b.updates, b.loss, b.predictions],
        ):
            np.testing.assert_allclose(
                x.numpy(), y.numpy(), rtol=1e-10, atol=1e-14
            )

    @parameterized.parameters(6, 3)
    def test_batch_norm_body_states_and_results(self, batch):
        """conv + BatchNorm: the split model == the whole, moving stats too."""

        def build():
            keras.utils.set_random_seed(1)
            return keras_ga.conv4(
                (8, 8, 1), 3, filters=4, blocks=2, downsample="stride"
            )

        rng = np.random.default_rng(0)
        ep = {
            "support_x": rng.normal(size=(2, 6, 8, 8, 1)).astype("float32"),
            "support_y": np.tile(np.arange(3), (2, 2)).astype("int32"),
            "query_x": rng.normal(size=(2, 3, 8, 8, 1)).astype("float32"),
            "query_y": np.tile(np.arange(3), (2, 1)).astype("int32"),
        }
        models = []
        for base in (build(), functional_copy(build())):
            model = keras_ga.MetaModel(
                base,
                algo="fomaml",
                inner_steps=2,
                inner_learning_rate=0.1,
                inner_batch_size=batch,
                adapt_layers=["logits"],
            )
            model.compile(
                optimizer="sgd", loss="sparse_categorical_crossentropy"
            )
            models.append(model)
        split, whole = models
        self.assertEqual(split._partition.reuses_body(batch, 6), batch == 6)
        a = split.run_tasks(ep, training=True)
        b = whole.run_tasks(ep, training=True)
        for x, y in zip(
            [*a.outer_grads, *a.states, a.loss],
            [*b.outer_grads, *b.states, b.loss],
        ):
            np.testing.assert_allclose(
                x.numpy(), y.numpy(), rtol=2e-5, atol=1e-6
            )
        # The inner loop's last state (the moving statistics of its last
        # step), body and head, as the whole model gives it.
        adaptations = []
        for model in models:
            theta, state = _adaptation.parameters(model)
            adaptations.append(
                _adaptation._inner_loop(model).run(
                    theta,
                    state,
                    tf.constant(ep["support_x"][0]),
                    tf.constant(ep["support_y"][0]),
                    steps=2,
                    batch_size=batch,
                    seed=[0, 0],
                    second_order=False,
                )
            )
        split_run, whole_run = adaptations
        for x, y in zip(
            [*split_run.phi, *split_run.state],
            [*whole_run.phi, *whole_run.state],
        ):
            np.testing.assert_allclose(
                x.numpy(), y.numpy(), rtol=2e-5, atol=1e-6
            )
        moved = [
            np.abs(s.numpy() - v.numpy()).max()
            for s, v in zip(split_run.state, split.base.non_trainable_variables)
        ]
        self.assertGreater(min(moved), 0.0)  # every statistic is updated


class AdaptationTest(parameterized.TestCase):
    def test_adapt_changes_the_named_layers_only(self):
        base = deep_base()
        model = meta_model(base, ("h2",), steps=3)
        ep = linear_episode(1, seed=6)
        sx, sy, qx, _ = support.task(ep, 0)
        theta = support.values(base.trainable_variables)
        phi = hand_adapt(base, theta, {2, 3}, sx, sy, 3)
        fast = model.adapt(sx, sy)
        for got, want in zip(support.values(fast.trainable_variables), phi):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-10)
        for i in (0, 1, 4, 5):
            np.testing.assert_array_equal(fast.trainable_variables[i], theta[i])
        pred = model.adapt_and_predict(sx, sy, qx)
        np.testing.assert_allclose(pred.numpy(), fast(qx).numpy(), rtol=1e-10)

    def test_learned_rates_and_carried_moments_cover_the_adapted_weights(self):
        model = meta_model(
            deep_base(), ("out",), learn_inner_rates="per_layer_per_step"
        )
        self.assertEqual(
            [tuple(r.shape) for r in model.inner_rates], [(2,), (2,)]
        )
        model.fit(
            tf.data.Dataset.from_tensors(linear_episode(2)).repeat(),
            steps_per_epoch=2,
            verbose=0,
        )
        self.assertGreater(np.abs(model.inner_rates[0].numpy() - LR).max(), 0.0)
        adam = keras_ga.inner_optimizers.Adam(moments="carry")
        model = meta_model(
            deep_base(), ("out",), algo="fomaml", inner_optimizer=adam
        )
        # [count, m of the 2 head weights, v of them]
        self.assertEqual(
            [tuple(v.shape) for v in model.inner_optimizer_state],
            [(), (4, 1), (1,), (4, 1), (1,)],
        )
        model.train_on_batch(linear_episode(2))
        self.assertEqual(int(model.inner_optimizer_state[0].numpy()), 2)

    def test_saved_model_keeps_adapt_layers(self):
        model = meta_model(deep_base(), ("h2", "out"))
        ep = linear_episode(2, seed=7)
        model.train_on_batch(ep)
        path = os.path.join(support.make_tempdir(self), "anil.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertEqual(loaded.adapt_layers, ("h2", "out"))
        self.assertEqual(loaded._partition.adapted, (2, 3, 4, 5))
        a = model.run_tasks(ep, training=False)
        b = loaded.run_tasks(ep, training=False)
        np.testing.assert_allclose(a.loss.numpy(), b.loss.numpy(), rtol=1e-12)


class ArgumentTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("string", "out", TypeError, "list of layer names"),
        ("number", 3, TypeError, "list of layer names"),
        ("not_a_name", [3], TypeError, "layer names \\(strings\\)"),
        ("empty", [], ValueError, "at least one layer"),
        ("repeated", ["out", "out"], ValueError, "must not repeat"),
        ("unknown", ["head"], ValueError, "'head' is not one"),
    )
    def test_bad_adapt_layers(self, value, error, message):
        with self.assertRaisesRegex(error, message):
            keras_ga.MetaModel(deep_base(), adapt_layers=value)

    def test_layer_without_weights_is_refused(self):
        base = keras_ga.conv4((8, 8, 1), 3, filters=4, blocks=2)
        with self.assertRaisesRegex(
            ValueError, "with trainable weights.*relu0"
        ):
            keras_ga.MetaModel(base, adapt_layers=["relu0"])

    def test_reptile_is_refused(self):
        with self.assertRaisesRegex(
            ValueError, "algo='reptile'.*never be trained"
        ):
            keras_ga.MetaModel(
                deep_base(), algo="reptile", adapt_layers=["out"]
            )


if __name__ == "__main__":
    absltest.main()
