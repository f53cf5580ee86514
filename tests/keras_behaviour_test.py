"""MetaModel behaves like a keras.Model, and refuses what it cannot honour.

Metric names, callbacks, `evaluate()` values, Keras arguments without a
meaning for meta-batches, endless streams, labels outside the model's
outputs (also under XLA), `adapt` inputs, `export` and loading.
"""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from tests import support

WAYS, DIM = 5, 3


def classifier(outputs=WAYS):
    return keras.Sequential(
        [
            keras.Input((DIM,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(outputs),
        ]
    )


def regressor():
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def class_episode(tasks=4, ways=WAYS, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, tasks, 10, DIM)).astype("float32")
    y = rng.integers(0, ways, (2, tasks, 10)).astype("int32")
    y[:, :, 0] = ways - 1  # every meta-batch holds the highest label
    return dict(zip(keras_ga.EPISODE_KEYS, (x[0], y[0], x[1], y[1])))


def regression_episode(tasks=4, seed=0):
    rng = np.random.default_rng(seed)
    sx, qx = rng.normal(size=(2, tasks, 10, 1)).astype("float32")
    return {
        "support_x": sx,
        "support_y": 2 * sx,
        "query_x": qx,
        "query_y": 2 * qx,
    }


def dataset(episode, repeat=2):
    return tf.data.Dataset.from_tensors(episode).repeat(repeat)


def sparse_ce(y, logits):
    """A loss function Keras knows only as a function, not by name."""
    return keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True
    )


def meta(base, loss="sparse_categorical_crossentropy", metrics=None, **kw):
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(base, algo="fomaml", inner_learning_rate=0.01)
    model.compile(optimizer="sgd", loss=loss, metrics=metrics, **kw)
    return model


class LabelRangeTest(parameterized.TestCase):
    """Labels outside the model's outputs raise in every execution mode."""

    @parameterized.parameters("auto", True, False)
    def test_train_and_test_steps_raise(self, jit_compile):
        model = meta(classifier(), jit_compile=jit_compile)
        episode = class_episode(ways=10)
        errors = (ValueError, tf.errors.InvalidArgumentError)
        pattern = r"\[0, 5\)|outside the valid range"
        with self.assertRaisesRegex(errors, pattern):
            model.train_on_batch(episode)
        with self.assertRaisesRegex(errors, pattern):
            model.evaluate(dataset(episode), verbose=0)

    def test_xla_message_names_the_rule_and_the_labels(self):
        model = meta(classifier(), jit_compile=True)
        with self.assertRaisesRegex(
            ValueError,
            r"`query_y`\) must be class indices in \[0, 5\): the model has 5 "
            r"outputs. Received: labels from 0 to 9",
        ):
            model.fit(dataset(class_episode(ways=10)), verbose=0)

    def test_labels_in_range_train_normally(self):
        model = meta(classifier(), jit_compile=True)
        logs = model.train_on_batch(class_episode(), return_dict=True)
        self.assertCountEqual(
            logs, ["loss", "pre_loss", "weight_min", "weight_neg_frac"]
        )
        for weight in model.base.weights:
            self.assertTrue(np.isfinite(weight.numpy()).all())

    def test_adapt_raises(self):
        model = meta(classifier())
        episode = class_episode(ways=7)
        with self.assertRaisesRegex(
            ValueError, r"`y` must hold class indices in \[0, 5\).* to 6"
        ):
            model.adapt(episode["support_x"][0], episode["support_y"][0])


class MetricNamesTest(parameterized.TestCase):
    """Metrics are named, resolved and monitored as in plain Keras."""

    def test_user_names_are_kept(self):
        model = meta(classifier(), metrics=["acc"])
        history = model.fit(
            dataset(class_episode()),
            validation_data=dataset(class_episode(seed=1)),
            verbose=0,
        )
        for key in ("acc", "pre_acc", "val_acc", "val_pre_acc"):
            self.assertIn(key, history.history)
        self.assertNotIn("accuracy", history.history)
        model = meta(regressor(), loss="mse", metrics=["mae"])
        history = model.fit(dataset(regression_episode()), verbose=0)
        self.assertIn("mae", history.history)
        self.assertIn("pre_mae", history.history)

    @parameterized.parameters("accuracy", "acc")
    def test_callbacks_infer_the_direction(self, name):
        model = meta(classifier(), metrics=[name])
        path = os.path.join(tempfile.mkdtemp(), "best.keras")
        stop = keras.callbacks.EarlyStopping(monitor=f"val_{name}")
        best = keras.callbacks.ModelCheckpoint(
            path, monitor=f"val_{name}", save_best_only=True
        )
        model.fit(
            dataset(class_episode()),
            validation_data=dataset(class_episode(seed=1)),
            epochs=2,
            callbacks=[stop, best],
            verbose=0,
        )
        self.assertIs(stop.monitor_op, keras.ops.greater)
        self.assertIs(best.monitor_op, keras.ops.greater)
        self.assertTrue(os.path.exists(path))

    def test_accuracy_with_a_custom_loss_is_resolved_from_shapes(self):
        model = meta(classifier(), loss=sparse_ce, metrics=["accuracy"])
        logs = model.evaluate(
            dataset(class_episode()), verbose=0, return_dict=True
        )
        episode = class_episode()
        x = episode["query_x"].reshape(-1, DIM)
        hits = model.predict(x, verbose=0).argmax(-1) == episode[
            "query_y"
        ].reshape(-1)
        # Before adaptation the predictions are the meta-parameters': the
        # sparse categorical accuracy over every task's query set, by hand.
        np.testing.assert_allclose(logs["pre_accuracy"], hits.mean(), 1e-6)
        self.assertBetween(logs["accuracy"], 0.0, 1.0)

    def test_evaluate_values_match_metrics_names(self):
        model = meta(classifier(), metrics=["acc"])
        data = dataset(class_episode())
        values = model.evaluate(data, verbose=0)
        logs = model.evaluate(data, verbose=0, return_dict=True)
        self.assertEqual(
            model.metrics_names, ["loss", "acc", "pre_loss", "pre_acc"]
        )
        self.assertLen(values, len(model.metrics_names))
        np.testing.assert_allclose(
            values, [logs[name] for name in model.metrics_names]
        )

    def test_accuracy_with_a_regression_loss_is_refused(self):
        model = keras_ga.MetaModel(regressor())
        with self.assertRaisesRegex(
            ValueError,
            r"`metrics` has 'accuracy'.*'mse' is a regression loss.*"
            r"Received: metrics=\['accuracy'\]",
        ):
            model.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])

    def test_regression_metric_on_class_labels_is_refused(self):
        model = meta(classifier(), metrics=["mse"])
        with self.assertRaisesRegex(
            ValueError,
            r"'mse' of `metrics` compares targets and predictions element by "
            r"element.*Received: targets of shape \(40,\), predictions of "
            r"shape \(40, 5\)",
        ):
            model.train_on_batch(class_episode())

    def test_metrics_must_be_a_list(self):
        model = keras_ga.MetaModel(classifier())
        with self.assertRaisesRegex(
            TypeError, r"`metrics` must be a list.*Received: metrics='acc'"
        ):
            model.compile(loss="mse", metrics="acc")


class KerasArgumentsTest(parameterized.TestCase):
    """Keras arguments that have no meaning for meta-batches are refused."""

    @parameterized.parameters("sample_weight", "class_weight")
    def test_weights_are_refused(self, name):
        model = meta(classifier())
        value = np.ones(4) if name == "sample_weight" else {0: 2.0}
        pattern = (
            rf"does not support `{name}`: a meta-batch has no per-example "
            rf"weights.*weighting.*Received: {name}="
        )
        with self.assertRaisesRegex(ValueError, pattern):
            model.fit(class_episode(), **{name: value}, verbose=0)
        with self.assertRaisesRegex(ValueError, pattern):
            model.train_on_batch(class_episode(), **{name: value})

    def test_sample_weight_refused_by_evaluate(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            ValueError, r"`MetaModel.evaluate` does not support"
        ):
            model.evaluate(class_episode(), sample_weight=np.ones(4))

    def test_y_is_refused(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            ValueError, r"so `y` must be None. Received: y=an array"
        ):
            model.fit(class_episode(), np.zeros(4), verbose=0)

    def test_tuple_of_arrays_trains_like_the_dict(self):
        episode = class_episode(tasks=8)
        weights = []
        for x in (episode, tuple(episode[k] for k in keras_ga.EPISODE_KEYS)):
            model = meta(classifier())
            model.fit(x, batch_size=4, shuffle=False, verbose=0)
            weights.append([w.numpy() for w in model.base.weights])
            self.assertEqual(int(model.optimizer.iterations), 2)
        for a, b in zip(*weights):
            np.testing.assert_array_equal(a, b)


class EndlessStreamTest(parameterized.TestCase):
    """An endless stream needs the steps argument that bounds it."""

    def endless(self):
        data = np.random.default_rng(0).normal(size=(10, 4, DIM))
        return keras_ga.sampler.few_shot_episodes(
            data.astype("float32"),
            ways=WAYS,
            shots=1,
            queries=1,
            meta_batch_size=2,
            seed=0,
            num_tasks=None,
        )

    def test_fit(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            ValueError,
            r"`x` is an endless dataset.*`steps_per_epoch` must say.*"
            r"Received: steps_per_epoch=None",
        ):
            model.fit(self.endless(), verbose=0)

    def test_fit_validation_data(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            ValueError,
            r"`validation_data` is an endless.*Received: validation_steps=None",
        ):
            model.fit(
                self.endless(),
                steps_per_epoch=1,
                validation_data=self.endless(),
                verbose=0,
            )

    def test_evaluate(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            ValueError, r"`x` is an endless.*Received: steps=None"
        ):
            model.evaluate(self.endless(), verbose=0)

    def test_with_steps_it_runs(self):
        model = meta(classifier())
        history = model.fit(self.endless(), steps_per_epoch=2, verbose=0)
        self.assertLen(history.history["loss"], 1)
        self.assertEqual(int(model.optimizer.iterations), 2)
        logs = model.evaluate(
            self.endless(), steps=2, verbose=0, return_dict=True
        )
        self.assertIn("loss", logs)


class ModelAndAdaptTest(absltest.TestCase):
    def test_multi_input_model_is_refused(self):
        a, b = keras.Input((2,)), keras.Input((3,))
        out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))
        with self.assertRaisesRegex(
            ValueError,
            r"`model` must have a single input and a single output.*"
            r"Received: model='two' with 2 inputs",
        ):
            keras_ga.MetaModel(keras.Model([a, b], out, name="two"))

    def test_adapt_refuses_an_episode_dict(self):
        model = meta(classifier())
        with self.assertRaisesRegex(
            TypeError,
            r"takes one task's support inputs and targets.*not an episode "
            r"dict.*Received: x=a dict with keys",
        ):
            model.adapt(class_episode(), None)

    def test_adapt_refuses_a_meta_batch(self):
        model = meta(classifier())
        episode = class_episode()
        with self.assertRaisesRegex(
            ValueError,
            r"`x` must be one task's support inputs, \[S, \*input_shape\] = "
            r"\['S', 3\].*Received: x.shape=\(4, 10, 3\)",
        ):
            model.adapt(episode["support_x"], episode["support_y"])

    def test_export_serves_the_meta_parameters(self):
        model = meta(classifier())
        model.fit(dataset(class_episode()), verbose=0)
        path = os.path.join(tempfile.mkdtemp(), "served")
        model.export(path, verbose=False)
        x = class_episode()["query_x"][0]
        loaded = tf.saved_model.load(path)
        served = loaded.serve(tf.constant(x))
        np.testing.assert_allclose(
            served.numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
        )

    def test_load_model_without_import_names_the_class(self):
        model = meta(classifier())
        path = os.path.join(tempfile.mkdtemp(), "meta.keras")
        model.save(path)
        code = (
            "import sys, keras\n"
            f"try:\n    keras.models.load_model({path!r})\n"
            "except Exception as error:\n"
            "    print(error)\n    sys.exit(3)\n"
            "assert 'keras_ga' not in sys.modules\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=support.python_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)
        self.assertIn("keras_ga>MetaModel", proc.stdout)
        # With keras_ga imported, the same file loads.
        self.assertIsInstance(keras.models.load_model(path), keras_ga.MetaModel)


if __name__ == "__main__":
    absltest.main()
