"""Tests of the meta-test protocol (keras_ga.evaluation)."""

import contextlib
import io
import json
import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import evaluation
from keras_ga.meta_model import TaskResults


def regression_tasks(n, s=6, q=5, seed=0, d=3):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, d, 1)).astype("float32")
    sx = rng.normal(size=(n, s, d)).astype("float32")
    qx = rng.normal(size=(n, q, d)).astype("float32")
    return {
        "support_x": sx,
        "support_y": sx @ w,
        "query_x": qx,
        "query_y": qx @ w,
    }


def classification_tasks(n, ways=3, shots=2, queries=4, seed=0, d=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, ways, d)).astype("float32")

    def draw(per_class):
        y = np.tile(np.repeat(np.arange(ways), per_class), (n, 1))
        x = np.take_along_axis(centres, y[..., None], axis=1)
        return x + 0.3 * rng.normal(size=x.shape).astype("float32"), y

    (sx, sy), (qx, qy) = draw(shots), draw(queries)
    return {
        "support_x": sx,
        "support_y": sy.astype("int32"),
        "query_x": qx,
        "query_y": qy.astype("int32"),
    }


def meta_model(base, loss, steps=2, lr=0.1, **kwargs):
    model = keras_ga.MetaModel(
        base,
        algo="maml",
        weighting="uniform",
        inner_steps=steps,
        inner_learning_rate=lr,
        **kwargs,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return model


def linear_model(d=3):
    keras.utils.set_random_seed(0)
    return meta_model(
        keras.Sequential([keras.Input((d,)), keras.layers.Dense(1)]), "mse"
    )


def batch_norm_classifier(ways=3, d=5):
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(ways),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return meta_model(base, loss, lr=0.5)


def dataset(tasks, batch):
    return tf.data.Dataset.from_tensor_slices(tasks).batch(batch)


class ConfidenceIntervalTest(parameterized.TestCase):
    def test_known_numbers(self):
        mean, ci95, std = evaluation.confidence_interval([0.0, 1.0, 0.0, 1.0])
        self.assertAlmostEqual(mean, 0.5)
        self.assertAlmostEqual(std, 0.5)
        self.assertAlmostEqual(ci95, 1.96 * 0.5 / 2.0)

    def test_matches_formula_on_random_values(self):
        values = np.random.default_rng(0).uniform(size=600)
        mean, ci95, std = evaluation.confidence_interval(values)
        np.testing.assert_allclose(mean, values.mean(), rtol=1e-12)
        np.testing.assert_allclose(std, values.std(ddof=0), rtol=1e-12)
        np.testing.assert_allclose(
            ci95, 1.96 * values.std() / math.sqrt(600), rtol=1e-12
        )

    def test_constant_values_have_zero_width(self):
        self.assertEqual(evaluation.confidence_interval([0.7] * 5)[1], 0.0)

    @parameterized.parameters([[]], [[[1.0, 2.0]]])
    def test_rejects_empty_or_2d(self, values):
        with self.assertRaisesRegex(ValueError, "`values` must be a non-empty"):
            evaluation.confidence_interval(values)


class PairedDifferenceTest(absltest.TestCase):
    def result(self, values, metric="mse"):
        values = np.asarray(values, np.float64)
        mean, ci95, std = evaluation.confidence_interval(values)
        return evaluation.EvaluationResult(
            metric, mean, ci95, std, values.size, 5, True, values
        )

    def test_known_numbers(self):
        a = self.result([1.0, 2.0, 3.0, 4.0])
        b = self.result([0.0, 2.0, 2.0, 4.0])  # differences 1, 0, 1, 0
        mean, ci95 = evaluation.paired_difference(a, b)
        self.assertAlmostEqual(mean, 0.5)
        self.assertAlmostEqual(ci95, 1.96 * 0.5 / 2.0)

    def test_shared_task_variance_cancels(self):
        tasks = np.random.default_rng(0).uniform(0, 10, size=100)
        mean, ci95 = evaluation.paired_difference(
            self.result(tasks + 0.1), self.result(tasks)
        )
        self.assertAlmostEqual(mean, 0.1)
        self.assertAlmostEqual(ci95, 0.0)

    def test_rejects_different_tasks(self):
        with self.assertRaisesRegex(ValueError, "same metric on the same"):
            evaluation.paired_difference(
                self.result([1.0, 2.0]), self.result([1.0])
            )
        with self.assertRaisesRegex(ValueError, "Received: a=mse"):
            evaluation.paired_difference(
                self.result([1.0]), self.result([1.0], metric="loss")
            )


class TaskMetricTest(absltest.TestCase):
    def results(self, predictions, loss=None):
        predictions = tf.constant(predictions, tf.float32)
        loss = tf.constant(loss if loss is not None else [0.0, 0.0])
        return TaskResults(None, [], loss, loss, predictions, predictions, [])

    def test_accuracy_per_task_by_hand(self):
        # Task 0: argmax 0, 1, 2 against labels 0, 1, 1 -> 2/3.
        # Task 1: argmax 1, 1, 1 against labels 0, 1, 2 -> 1/3.
        pred = [
            [[5, 1, 0], [0, 3, 1], [0, 1, 2]],
            [[0, 1, 0], [0, 3, 1], [0, 4, 2]],
        ]
        labels = tf.constant([[0, 1, 1], [0, 1, 2]])
        values = evaluation.task_metric("accuracy", self.results(pred), labels)
        np.testing.assert_allclose(values, [2 / 3, 1 / 3])

    def test_mse_per_task_by_hand(self):
        pred = [[[1.0], [2.0]], [[0.0], [0.0]]]
        y = tf.constant([[[1.0], [0.0]], [[3.0], [1.0]]])
        values = evaluation.task_metric("mse", self.results(pred), y)
        np.testing.assert_allclose(values, [2.0, 5.0])

    def test_loss_is_the_task_loss(self):
        results = self.results([[[0.0]], [[0.0]]], loss=[0.25, 1.5])
        values = evaluation.task_metric("loss", results, None)
        np.testing.assert_allclose(values, [0.25, 1.5])

    def test_rejects_unknown_metric(self):
        with self.assertRaisesRegex(ValueError, "`metric` must be one of"):
            evaluation.task_metric("f1", self.results([[[0.0]]]), None)

    def test_accuracy_with_one_hot_labels(self):
        pred = [[[5, 1, 0], [0, 3, 1]], [[0, 1, 0], [0, 3, 1]]]
        labels = tf.one_hot([[0, 2], [0, 1]], 3)
        values = evaluation.task_metric("accuracy", self.results(pred), labels)
        np.testing.assert_allclose(values, [0.5, 0.5])

    def test_accuracy_needs_class_scores_and_labels(self):
        # A regressor's outputs [N, Q, 1] against float targets.
        with self.assertRaisesRegex(
            ValueError,
            r"`metric='accuracy'` needs class scores \[tasks, queries, "
            r"classes\] with at least 2 classes and integer labels.*"
            r"Received: predictions of shape \(2, 2, 1\) and query_y of "
            r"shape \(2, 2, 1\) and dtype float32\..*'mse' for regression",
        ):
            evaluation.task_metric(
                "accuracy",
                self.results([[[1.0], [2.0]], [[0.0], [0.0]]]),
                tf.zeros([2, 2, 1]),
            )

    def test_mse_needs_targets_shaped_like_predictions(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`metric='mse'` needs targets shaped like the predictions\. "
            r"Received: predictions of shape \(1, 2, 3\) and query_y of "
            r"shape \(1, 2\) and dtype int32\..*'accuracy' for "
            "classification",
        ):
            evaluation.task_metric(
                "mse", self.results([[[0, 1, 0], [0, 3, 1]]]), [[0, 1]]
            )


class EvaluateTasksTest(parameterized.TestCase):
    def test_mse_matches_adapt_then_predict(self):
        model = linear_model()
        tasks = regression_tasks(6)
        result = evaluation.evaluate_tasks(
            model, dataset(tasks, 3), metric="mse", steps=3, verbose=0
        )
        expected = []
        for i in range(6):
            fast = model.adapt(tasks["support_x"][i], tasks["support_y"][i], 3)
            pred = fast.predict(tasks["query_x"][i], verbose=0)
            expected.append(np.mean((pred - tasks["query_y"][i]) ** 2))
        np.testing.assert_allclose(result.per_task, expected, rtol=1e-4)
        self.assertEqual(result.num_tasks, 6)
        self.assertEqual(result.steps, 3)
        mean, ci95, _ = evaluation.confidence_interval(expected)
        np.testing.assert_allclose([result.mean, result.ci95], [mean, ci95])

    def test_more_steps_lower_the_regression_error(self):
        model = linear_model()
        data = dataset(regression_tasks(8), 4)
        one = evaluation.evaluate_tasks(
            model, data, metric="mse", steps=1, verbose=0
        )
        ten = evaluation.evaluate_tasks(
            model, data, metric="mse", steps=10, verbose=0
        )
        self.assertLess(ten.mean, one.mean)

    def test_transductive_and_not_differ_with_batch_norm(self):
        model = batch_norm_classifier()
        data = dataset(classification_tasks(8), 4)
        both = {
            mode: evaluation.evaluate_tasks(
                model, data, metric="loss", transductive=mode, verbose=0
            )
            for mode in (True, False)
        }
        self.assertTrue(both[True].transductive)
        self.assertFalse(both[False].transductive)
        self.assertIn("non-transductive", str(both[False]))
        self.assertNotIn("non-", str(both[True]))
        self.assertGreater(
            np.max(np.abs(both[True].per_task - both[False].per_task)), 1e-3
        )

    def test_transductive_and_not_agree_without_batch_norm(self):
        model = linear_model()
        data = dataset(regression_tasks(4), 2)
        values = [
            evaluation.evaluate_tasks(
                model, data, metric="mse", transductive=mode, verbose=0
            ).per_task
            for mode in (True, False)
        ]
        np.testing.assert_allclose(values[0], values[1], rtol=1e-6)

    def test_defaults_come_from_the_model(self):
        model = batch_norm_classifier()
        model.transductive = False
        result = evaluation.evaluate_tasks(
            model, dataset(classification_tasks(4), 2), verbose=0
        )
        self.assertFalse(result.transductive)
        self.assertEqual(result.steps, model.eval_inner_steps)
        self.assertEqual(result.metric, "accuracy")
        self.assertEqual(result.num_tasks, 4)  # all of a finite dataset
        self.assertBetween(result.mean, 0.0, 1.0)

    def test_num_tasks_truncates_and_endless_sets_use_default(self):
        model = linear_model()
        data = dataset(regression_tasks(6), 3)
        result = evaluation.evaluate_tasks(
            model, data, metric="mse", num_tasks=4, verbose=0
        )
        self.assertEqual(result.num_tasks, 4)
        endless = data.repeat()
        result = evaluation.evaluate_tasks(
            model, endless, metric="mse", verbose=1
        )
        self.assertEqual(result.num_tasks, evaluation.DEFAULT_NUM_TASKS["mse"])

    def test_result_as_dict_is_json(self):
        model = linear_model()
        result = evaluation.evaluate_tasks(
            model, dataset(regression_tasks(2), 2), metric="mse", verbose=0
        )
        record = json.loads(json.dumps(result.as_dict()))
        self.assertEqual(
            sorted(record),
            sorted(
                [
                    "metric",
                    "mean",
                    "ci95",
                    "std",
                    "num_tasks",
                    "steps",
                    "protocol",
                    "transductive",
                ]
            ),
        )
        self.assertIn("mse", str(result))

    def test_too_few_tasks(self):
        with self.assertRaisesRegex(ValueError, "ran out after 2 tasks"):
            evaluation.evaluate_tasks(
                linear_model(),
                dataset(regression_tasks(2), 2),
                metric="mse",
                num_tasks=4,
                verbose=0,
            )

    def test_empty_tasks(self):
        with self.assertRaisesRegex(ValueError, "at least one task"):
            evaluation.evaluate_tasks(linear_model(), [], metric="mse")

    @parameterized.parameters(
        ("num_tasks", 0), ("steps", -1), ("steps", 1.5), ("num_tasks", True)
    )
    def test_rejects_bad_counts(self, name, value):
        with self.assertRaisesRegex(ValueError, f"`{name}` must be a positive"):
            evaluation.evaluate_tasks(
                linear_model(),
                dataset(regression_tasks(2), 2),
                metric="mse",
                verbose=0,
                **{name: value},
            )

    def test_rejects_unknown_metric(self):
        with self.assertRaisesRegex(ValueError, "Received: metric='top5'"):
            evaluation.evaluate_tasks(linear_model(), [], metric="top5")

    @parameterized.parameters(
        ("mse", "mse"),
        (keras.losses.MeanSquaredError(), "mse"),
        ("mae", "loss"),
        (keras.losses.Huber(), "loss"),
    )
    def test_regression_metric_is_inferred_from_the_loss(self, loss, metric):
        keras.utils.set_random_seed(0)
        base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model = meta_model(base, loss)
        result = evaluation.evaluate_tasks(
            model, dataset(regression_tasks(4), 2), verbose=0
        )
        self.assertEqual(result.metric, metric)
        self.assertEqual(result.num_tasks, 4)
        self.assertNotIn("accuracy", str(result))
        expected = evaluation.evaluate_tasks(
            model, dataset(regression_tasks(4), 2), metric=metric, verbose=0
        )
        np.testing.assert_allclose(result.per_task, expected.per_task)

    @parameterized.parameters(
        "sparse_categorical_crossentropy",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    def test_classification_metric_is_inferred_from_the_loss(self, loss):
        keras.utils.set_random_seed(0)
        base = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        result = evaluation.evaluate_tasks(
            meta_model(base, loss), dataset(classification_tasks(4), 2)
        )
        self.assertEqual(result.metric, "accuracy")

    def test_custom_loss_function_reports_the_loss(self):
        def squared(y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

        model = meta_model(
            keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
            squared,
        )
        self.assertEqual(evaluation.infer_metric(model), "loss")

    def test_metric_needs_a_compiled_loss(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`metric` must be given when `model` has no compiled loss.*"
            r"Received: metric=None, model of type object",
        ):
            evaluation.evaluate_tasks(object(), [], verbose=0)

    @parameterized.parameters(
        ("accuracy", "linear", r"`metric='accuracy'` needs class scores"),
        ("mse", "classifier", r"`metric='mse'` needs targets shaped like"),
    )
    def test_metric_that_does_not_fit_the_outputs(self, metric, kind, error):
        if kind == "linear":
            model, tasks = linear_model(), regression_tasks(2)
        else:
            model, tasks = batch_norm_classifier(), classification_tasks(2)
        with self.assertRaisesRegex(ValueError, error):
            evaluation.evaluate_tasks(
                model, dataset(tasks, 2), metric=metric, verbose=0
            )

    def test_one_meta_batch(self):
        result = evaluation.evaluate_tasks(
            linear_model(), regression_tasks(3), verbose=0
        )
        self.assertEqual(result.num_tasks, 3)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _output(fn, tty=False):
    out = _Terminal() if tty else io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn()
    return result, out.getvalue()


class ProgressTest(parameterized.TestCase):
    @parameterized.parameters(
        ("dataset", None, 6),
        ("list", None, 6),
        ("dataset", 4, 4),
        ("endless", 4, 4),
    )
    def test_bar_knows_its_total_and_ends_its_line(self, kind, num, total):
        tasks = regression_tasks(6)
        data = {
            "dataset": dataset(tasks, 2),
            "list": list(dataset(tasks, 2).as_numpy_iterator()),
            "endless": dataset(tasks, 2).repeat(),
        }[kind]
        model = linear_model()
        result, out = _output(
            lambda: evaluation.evaluate_tasks(
                model, data, metric="mse", num_tasks=num, verbose=1
            )
        )
        self.assertEqual(result.num_tasks, total)
        self.assertNotIn("Unknown", out)
        self.assertIn(f"{total}/{total}", out)
        self.assertTrue(out.endswith("\n"), repr(out[-80:]))
        self.assertEqual(out.count("\n"), 1)

    def test_unknown_total_still_ends_at_the_count(self):
        tasks = dataset(regression_tasks(6), 2).filter(lambda d: True)
        _, out = _output(
            lambda: evaluation.evaluate_tasks(
                linear_model(), tasks, metric="mse", verbose=1
            )
        )
        self.assertIn("6/6", out)
        self.assertTrue(out.endswith("\n"))

    def test_redirected_output_gets_one_line(self):
        # "auto": a Progbar updated in place on a terminal, else verbose=2,
        # one line when done, as Keras writes for verbose=2.
        model = linear_model()
        data = dataset(regression_tasks(6), 2)
        _, out = _output(
            lambda: evaluation.evaluate_tasks(model, data, metric="mse")
        )
        self.assertRegex(out, r"^6/6 - \d+s - .*/task\n$")
        _, out = _output(
            lambda: evaluation.evaluate_tasks(model, data, metric="mse"),
            tty=True,
        )
        self.assertIn("\r", out)  # Updated in place.
        self.assertIn("6/6", out)
        self.assertTrue(out.endswith("\n"))

    def test_silent(self):
        _, out = _output(
            lambda: evaluation.evaluate_tasks(
                linear_model(), dataset(regression_tasks(2), 2), verbose=0
            )
        )
        self.assertEqual(out, "")

    def test_rejects_bad_verbose(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`verbose` must be one of \(0, 1, 2, 'auto'\)\. "
            r"Received: verbose='yes'",
        ):
            evaluation.evaluate_tasks(
                linear_model(), dataset(regression_tasks(2), 2), verbose="yes"
            )


if __name__ == "__main__":
    absltest.main()
