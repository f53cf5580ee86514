"""Tests of the algorithm registry and the per-task rules' interface."""

from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import algorithms

D = 3  # input size of the linear-regression tasks


class JointTraining(algorithms.Algorithm):
    """A toy fourth rule: the query gradient at theta, not at theta_i."""

    name = "joint"

    def train(self, theta, learner):
        phi, _ = learner.adapt(theta)
        with tf.GradientTape() as tape:
            tape.watch(theta)
            query = learner.query(theta)
        grads = tape.gradient(query.loss, theta)
        return algorithms.task_results(theta, phi, grads, query)


def linear_episode(n, s=4, q=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, D, 1))
    sx, qx = rng.normal(size=(n, s, D)), rng.normal(size=(n, q, D))
    return {
        "support_x": sx,
        "support_y": sx @ w,
        "query_x": qx,
        "query_y": qx @ w,
    }


def linear_model(algo, eps=0.5):
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((D,), dtype="float64"),
            keras.layers.Dense(1, use_bias=False, dtype="float64"),
        ]
    )
    model = keras_ga.MetaModel(
        base, algo=algo, weighting="uniform", inner_learning_rate=0.1
    )
    model.compile(optimizer=keras.optimizers.SGD(eps), loss="mse")
    return model


class RegistryTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        # Registrations made by a test end with it.
        self.enter_context(mock.patch.dict(algorithms._REGISTRY))

    def test_names_are_the_three_built_in_rules(self):
        self.assertEqual(algorithms.names(), ("maml", "fomaml", "reptile"))
        self.assertEqual(keras_ga.meta_model.ALGOS, algorithms.names())

    @parameterized.parameters(
        ("maml", algorithms.MAML),
        ("fomaml", algorithms.FOMAML),
        ("reptile", algorithms.Reptile),
    )
    def test_get_returns_the_rule(self, name, cls):
        rule = algorithms.get(name)
        self.assertIsInstance(rule, cls)
        self.assertEqual(rule.name, name)

    def test_unknown_name(self):
        pattern = (
            r"`algo` must be one of \['maml', 'fomaml', 'reptile'\]. "
            r"Received: algo='anil'"
        )
        with self.assertRaisesRegex(ValueError, pattern):
            algorithms.get("anil")

    def test_register_adds_a_name(self):
        self.assertIs(algorithms.register(JointTraining), JointTraining)
        self.assertEqual(algorithms.names()[-1], "joint")
        self.assertIsInstance(algorithms.get("joint"), JointTraining)
        with self.assertRaisesRegex(ValueError, r"Received: algo='anil'"):
            algorithms.get("anil")

    def test_no_registration_outlives_its_test(self):
        # setUp's patch undoes what any other test registered.
        self.assertNotIn("joint", algorithms.names())

    def test_duplicate_name_refused(self):
        class Again(JointTraining):
            name = "maml"

        with self.assertRaisesRegex(
            ValueError,
            r"`name` must be unique: 'maml' is already registered by MAML. "
            r"Received: name='maml' on Again",
        ):
            algorithms.register(Again)

    def test_empty_name_refused(self):
        class Nameless(JointTraining):
            name = ""

        with self.assertRaisesRegex(
            ValueError,
            r"`name` of an algorithm must be a non-empty string. "
            r"Received: name='' on Nameless",
        ):
            algorithms.register(Nameless)

    def test_non_algorithm_refused(self):
        with self.assertRaisesRegex(
            TypeError,
            r"`cls` must be a subclass of keras_ga.algorithms.Algorithm. "
            r"Received: cls=<class 'object'>",
        ):
            algorithms.register(object)

    def test_train_is_abstract(self):
        class Incomplete(algorithms.Algorithm):
            name = "incomplete"

        with self.assertRaisesRegex(TypeError, "abstract"):
            Incomplete()


class RuleTest(parameterized.TestCase):
    def test_task_results_fields(self):
        self.assertEqual(
            algorithms.TaskResults._fields,
            (
                "outer_grads",
                "updates",
                "loss",
                "pre_loss",
                "predictions",
                "pre_predictions",
                "states",
                "rate_grads",
            ),
        )
        self.assertIs(keras_ga.meta_model.TaskResults, algorithms.TaskResults)

    @parameterized.parameters(
        ("maml", 10, 5, 10),
        ("fomaml", 10, 5, 10),
        ("reptile", 10, 5, 2),
        ("reptile", 10, 3, 4),  # ceil(10 / 3)
        ("reptile", 5, 5, 1),
    )
    def test_default_inner_batch_size(self, name, support, steps, expected):
        rule = algorithms.get(name)
        self.assertEqual(
            rule.default_inner_batch_size(support, steps), expected
        )

    def test_task_results_replaces_missing_gradients_with_zeros(self):
        theta = [tf.constant([1.0, 2.0]), tf.constant([3.0])]
        phi = [tf.constant([0.5, 2.0]), tf.constant([1.0])]
        query = keras_ga.inner_loop.LossOutput(
            tf.constant(0.5), tf.constant([[1.0]]), [tf.constant(7.0)]
        )
        results = algorithms.task_results(theta, phi, [None, phi[1]], query)
        np.testing.assert_array_equal(results.outer_grads[0], [0.0, 0.0])
        np.testing.assert_array_equal(results.outer_grads[1], [1.0])
        np.testing.assert_array_equal(results.updates[0], [0.5, 0.0])
        np.testing.assert_array_equal(results.updates[1], [2.0])
        self.assertIsNone(results.pre_loss)
        self.assertEqual(float(results.states[0]), 7.0)
        last = [tf.constant(9.0)]
        again = algorithms.task_results(theta, phi, phi, query, states=last)
        self.assertIs(again.states, last)


class FourthRuleTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.enter_context(mock.patch.dict(algorithms._REGISTRY))
        algorithms.register(JointTraining)

    def test_fit_applies_the_rule(self):
        eps = 0.5
        model = linear_model("joint", eps)
        ep = linear_episode(4, seed=2)
        theta = model.base.get_weights()[0]
        grads = [
            2.0 / 5 * x.T @ (x @ theta - y)
            for x, y in zip(ep["query_x"], ep["query_y"])
        ]
        expected = theta - eps * np.mean(grads, axis=0)
        history = model.fit(
            tf.data.Dataset.from_tensors(ep), epochs=1, verbose=0
        )
        np.testing.assert_allclose(
            model.base.get_weights()[0], expected, rtol=1e-9
        )
        self.assertIn("pre_loss", history.history)
        logs = model.evaluate(
            tf.data.Dataset.from_tensors(ep), verbose=0, return_dict=True
        )
        self.assertLess(logs["loss"], logs["pre_loss"])

    def test_config_names_the_rule(self):
        model = linear_model("joint")
        config = model.get_config()
        self.assertEqual(config["algo"], "joint")
        again = keras_ga.MetaModel.from_config(config)
        self.assertEqual(again.algo, "joint")

    def test_meta_model_lists_registered_names_in_errors(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`algo` must be one of \['maml', 'fomaml', 'reptile', 'joint'\]",
        ):
            linear_model("anil")


if __name__ == "__main__":
    absltest.main()
