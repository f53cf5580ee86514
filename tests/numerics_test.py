"""Tests of silent traps: BatchNorm sub-batches, mixed precision, retracing.

Each test here fails on a one-line mistake in the library (named in its
docstring) or on a behaviour that went wrong silently before.
"""

import subprocess
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import _adaptation
from tests import support


def bn_mlp(stock=True, units=8):
    bn = (
        keras.layers.BatchNormalization
        if stock
        else keras_ga.layers.BatchNormalization
    )
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(units),
            bn(),
            keras.layers.ReLU(),
            keras.layers.Dense(2),
        ]
    )


class SubclassedBatchNorm(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)
        self.bn = keras.layers.BatchNormalization()
        self.out = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.out(self.bn(self.dense(x), training=training))


def regression_episode(n=3, s=5, q=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "support_x": rng.normal(size=(n, s, 3)).astype("float32"),
        "support_y": rng.normal(size=(n, s, 2)).astype("float32"),
        "query_x": rng.normal(size=(n, q, 3)).astype("float32"),
        "query_y": rng.normal(size=(n, q, 2)).astype("float32"),
    }


class MixedPrecisionTest(parameterized.TestCase):
    """Item 1: under mixed_float16 the outer update is float32's.

    Fails when `train_step` hands `optimizer.apply` unscaled gradients:
    `LossScaleOptimizer` divides them by its loss scale (32768 at first).
    """

    def tearDown(self):
        keras.mixed_precision.set_global_policy("float32")
        super().tearDown()

    def _train(self, policy, algo, with_bn):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        layers = [keras.Input((3,)), keras.layers.Dense(16)]
        if with_bn:
            layers.append(keras.layers.BatchNormalization())
        layers += [keras.layers.ReLU(), keras.layers.Dense(2)]
        base = keras.Sequential(layers)
        before = [w.copy() for w in base.get_weights()]
        model = keras_ga.MetaModel(
            base, algo=algo, inner_steps=2, inner_learning_rate=0.1
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        for seed in range(3):
            logs = model.train_on_batch(
                regression_episode(seed=seed), return_dict=True
            )
        keras.mixed_precision.set_global_policy("float32")
        moved = [a - b for a, b in zip(base.get_weights(), before)]
        return model, moved, logs

    @parameterized.product(algo=["maml", "reptile"], with_bn=[False, True])
    def test_outer_update_equals_float32(self, algo, with_bn):
        _, full, full_logs = self._train("float32", algo, with_bn)
        model, mixed, mixed_logs = self._train("mixed_float16", algo, with_bn)
        self.assertIsInstance(
            model.optimizer, keras.optimizers.LossScaleOptimizer
        )
        self.assertEqual(model.base.layers[-1].compute_dtype, "float16")
        largest = max(np.abs(a).max() for a in full)
        for a, b in zip(full, mixed):
            self.assertEqual(b.dtype, np.float32)
            # Equal within float16 round-off of the forward pass.
            np.testing.assert_allclose(b, a, atol=2e-3 * largest)
        total = sum(np.abs(a).sum() for a in full)
        self.assertGreater(total, 0.05)
        self.assertAlmostEqual(
            sum(np.abs(b).sum() for b in mixed) / total, 1.0, delta=0.01
        )
        # The result: the same query loss after the same three steps.
        self.assertAlmostEqual(
            float(mixed_logs["loss"]), float(full_logs["loss"]), delta=0.01
        )


class ManyTasksTest(parameterized.TestCase):
    """Item 11: adapting and predicting many tasks does not retrace."""

    def _model(self, algo="maml"):
        keras.utils.set_random_seed(0)
        model = keras_ga.MetaModel(
            bn_mlp(stock=False), algo=algo, inner_steps=2
        )
        model.compile(optimizer="sgd", loss="mse")
        return model

    @parameterized.parameters(True, False)
    def test_adapt_and_predict_traces_once_and_equals_adapt(self, trans):
        model = self._model()
        for seed in range(10):
            ep = regression_episode(n=1, seed=seed)
            sx, sy, qx = (
                ep[k][0] for k in ("support_x", "support_y", "query_x")
            )
            protocol = "transductive" if trans else "moving_stats"
            fast = model.adapt_and_predict(sx, sy, qx, protocol=protocol)
            slow = model.adapt(sx, sy)(qx, training=trans)
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
        fn = _adaptation.adapt_and_predict_function(model)
        self.assertEqual(fn.experimental_get_tracing_count(), 1)
        self.assertEqual(
            _adaptation.adapt_function(model).experimental_get_tracing_count(),
            1,
        )

    def test_sub_batches_and_a_new_shape(self):
        model = keras_ga.MetaModel(
            keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
            algo="reptile",
            inner_steps=3,
        )
        model.compile(optimizer="sgd", loss="mse")
        for s in (5, 7):
            ep = regression_episode(n=1, s=s)
            sx, sy, qx = (
                ep[k][0] for k in ("support_x", "support_y", "query_x")
            )
            np.testing.assert_allclose(
                model.adapt_and_predict(sx, sy, qx, seed=3),
                model.adapt(sx, sy, seed=3)(qx),
                rtol=1e-5,
                atol=1e-6,
            )
        fn = _adaptation.adapt_and_predict_function(model)
        self.assertEqual(fn.experimental_get_tracing_count(), 2)

    def test_repeated_evaluate_tasks_reuse_one_trace(self):
        model = self._model()
        tasks = [regression_episode(seed=seed) for seed in range(3)]
        first = keras_ga.evaluation.evaluate_tasks(model, tasks, verbose=0)
        for _ in range(3):
            again = keras_ga.evaluation.evaluate_tasks(model, tasks, verbose=0)
        np.testing.assert_array_equal(first.per_task, again.per_task)
        runs = list(model._evaluate_tasks_runs.values())
        self.assertLen(runs, 1)
        self.assertEqual(runs[0].experimental_get_tracing_count(), 1)
        keras_ga.evaluation.evaluate_tasks(model, tasks, steps=1, verbose=0)
        self.assertLen(model._evaluate_tasks_runs, 2)


class WhichModelIsTrainedTest(parameterized.TestCase):
    """Item 13: `MetaModel` always trains the model it is given."""

    @parameterized.parameters(True, False)
    def test_the_given_model_is_trained_in_place(self, with_bn):
        keras.utils.set_random_seed(0)
        base = (
            bn_mlp()
            if with_bn
            else keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        )
        before = [w.copy() for w in base.get_weights()]
        model = keras_ga.MetaModel(base, algo="fomaml", inner_steps=1)
        self.assertIs(model.base, base)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(regression_episode())
        moved = [
            not np.allclose(a, b) for a, b in zip(before, base.get_weights())
        ]
        self.assertTrue(any(moved))
        for a, b in zip(base.get_weights(), model.base.get_weights()):
            np.testing.assert_array_equal(a, b)

    def test_stock_layers_become_exact_in_place(self):
        base = bn_mlp()
        layer = base.layers[1]
        weights = base.get_weights()
        keras_ga.MetaModel(base)
        self.assertIs(base.layers[1], layer)
        self.assertIsInstance(layer, keras_ga.layers.BatchNormalization)
        for a, b in zip(weights, base.get_weights()):
            np.testing.assert_array_equal(a, b)


class SubclassedBatchNormTest(parameterized.TestCase):
    """Item 12: subclassed models with stock BatchNorm work for every algo.

    Before, they were refused for every algorithm with a message about
    MAML's second derivatives; now their layers are made exact in place.
    """

    @parameterized.parameters("maml", "fomaml", "reptile")
    def test_subclassed_model_with_stock_batch_norm_trains(self, algo):
        keras.utils.set_random_seed(0)
        net = SubclassedBatchNorm()
        net(np.zeros((2, 3), "float32"))
        model = keras_ga.MetaModel(net, algo=algo, inner_steps=2)
        self.assertIsInstance(net.bn, keras_ga.layers.BatchNormalization)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = net.out.kernel.numpy().copy()
        logs = model.train_on_batch(regression_episode(), return_dict=True)
        self.assertTrue(np.isfinite(logs["loss"]))
        self.assertFalse(np.allclose(before, net.out.kernel.numpy()))

    def test_exact_batch_norm_false_keeps_the_stock_layer(self):
        net = SubclassedBatchNorm()
        net(np.zeros((2, 3), "float32"))
        keras_ga.MetaModel(net, exact_batch_norm=False)
        self.assertIs(type(net.bn), keras.layers.BatchNormalization)


class ReptileSubBatchTest(parameterized.TestCase):
    """Item 2: Reptile's default sub-batch with batch statistics."""

    def _model(self, base, **kwargs):
        model = keras_ga.MetaModel(base, algo="reptile", **kwargs)
        model.compile(optimizer="sgd", loss="mse")
        return model

    @parameterized.parameters(True, False)
    def test_batch_norm_model_steps_on_the_whole_support_set(self, stock):
        model = self._model(bn_mlp(stock), inner_steps=5)
        self.assertEqual(_adaptation.inner_batch_size(model, 5), 5)
        self.assertEqual(_adaptation.inner_batch_size(model, 25), 25)

    def test_model_without_batch_norm_keeps_ceil_s_over_k(self):
        base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model = self._model(base, inner_steps=5)
        self.assertEqual(_adaptation.inner_batch_size(model, 5), 1)
        self.assertEqual(_adaptation.inner_batch_size(model, 23), 5)

    @parameterized.parameters("maml", "reptile")
    def test_sub_batch_of_one_is_refused_with_batch_norm(self, algo):
        with self.assertRaisesRegex(
            ValueError,
            "`inner_batch_size` must be at least 2.*Received: "
            "inner_batch_size=1",
        ):
            keras_ga.MetaModel(bn_mlp(), algo=algo, inner_batch_size=1)
        base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        keras_ga.MetaModel(base, algo=algo, inner_batch_size=1)


class TrainingStepsTest(parameterized.TestCase):
    """Item 17: training adapts with `inner_steps`, not `eval_inner_steps`."""

    def _update(self, algo, inner_steps, eval_inner_steps):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((3,), dtype="float64"),
                keras.layers.Dense(2, dtype="float64"),
            ]
        )
        before = [w.copy() for w in base.get_weights()]
        model = keras_ga.MetaModel(
            base,
            algo=algo,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            inner_learning_rate=0.1,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        ep = {k: v.astype("float64") for k, v in regression_episode().items()}
        model.train_on_batch(ep)
        return [a - b for a, b in zip(base.get_weights(), before)]

    @parameterized.parameters("maml", "fomaml", "reptile")
    def test_eval_inner_steps_do_not_change_training(self, algo):
        trained = self._update(algo, inner_steps=1, eval_inner_steps=4)
        one = self._update(algo, inner_steps=1, eval_inner_steps=1)
        four = self._update(algo, inner_steps=4, eval_inner_steps=4)
        for a, b in zip(trained, one):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        self.assertGreater(
            max(np.abs(a - c).max() for a, c in zip(trained, four)), 1e-4
        )


class ReptileMovingStatisticsTest(absltest.TestCase):
    """Item 17: Reptile's moving statistics follow the last sub-batch."""

    def test_moving_statistics_of_the_last_inner_sub_batch(self):
        keras.utils.set_random_seed(0)
        base = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.BatchNormalization(),  # momentum 0.99
                keras.layers.Dense(2),
            ]
        )
        steps, batch, support = 3, 2, 4
        model = keras_ga.MetaModel(
            base,
            algo="reptile",
            inner_steps=steps,
            inner_batch_size=batch,
            inner_learning_rate=0.1,
        )
        # Without XLA, whose stateless RNG draws other numbers than the
        # order reproduced below.
        model.compile(optimizer="sgd", loss="mse", jit_compile=False)
        rng = np.random.default_rng(0)
        n = 2
        ep = regression_episode(n=n, s=support)
        # Support examples far apart, so each sub-batch has its own moments.
        ep["support_x"] = rng.normal(
            np.arange(support)[None, :, None] * 5.0, 1.0, (n, support, 3)
        ).astype("float32")
        model.train_on_batch(ep)
        # The documented order: one random permutation per task, seeded by
        # (optimizer iteration, task index), cycled in runs of `batch`.
        means, variances = [], []
        for task in range(n):
            u = tf.random.stateless_uniform([support], seed=[0, task])
            order = tf.argsort(u).numpy()
            last = order[((steps - 1) * batch + np.arange(batch)) % support]
            x = ep["support_x"][task][last]
            means.append(x.mean(axis=0))
            variances.append(x.var(axis=0))
        bn = base.layers[0]
        np.testing.assert_allclose(
            bn.moving_mean.numpy(), 0.01 * np.mean(means, axis=0), rtol=1e-4
        )
        np.testing.assert_allclose(
            bn.moving_variance.numpy(),
            0.99 + 0.01 * np.mean(variances, axis=0),
            rtol=1e-4,
        )


class XlaWarningTest(absltest.TestCase):
    """Item 14: `jit_compile=True` on a net with max-pooling warns."""

    def _model(self):
        base = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(2, 3, padding="same"),
                keras_ga.layers.MaxPooling2D(2),
                keras.layers.Flatten(),
                keras.layers.Dense(2),
            ]
        )
        return keras_ga.MetaModel(base)

    def test_warns_for_explicit_xla(self):
        with self.assertWarnsRegex(UserWarning, "max-pooling.*approximate"):
            self._model().compile(
                loss="sparse_categorical_crossentropy", jit_compile=True
            )

    def test_auto_and_false_do_not_warn(self):
        for jit_compile in ("auto", False):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._model().compile(
                    loss="sparse_categorical_crossentropy",
                    jit_compile=jit_compile,
                )
            self.assertEmpty(
                [w for w in caught if "max-pooling" in str(w.message)]
            )


# Meta-trains an MLP (second-order MAML, and Reptile with random inner
# sub-batches) and a conv net with max-pooling, BatchNorm and a
# cross-entropy (second-order MAML), with MetaModel's other defaults, and
# adapts each to a new task.
_TRAIN_TWO_MODELS = """
import keras, numpy as np, keras_ga
rng = np.random.default_rng(0)
def train(base, x, y, **kwargs):
    model = keras_ga.MetaModel(base, inner_steps=2, **kwargs)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit((x, y, x, y), epochs=2, verbose=0)
    model.adapt_and_predict(x[0], y[0], x[1])
y = np.tile(np.arange(2, dtype="int32"), (3, 2))
x = rng.random((3, 4, 3), "float32")
train(keras_ga.mlp((3,), 2, (8,)), x, y, algo="maml")
train(keras_ga.mlp((3,), 2, (8,)), x, y, algo="reptile", inner_batch_size=2)
conv = keras_ga.conv4((8, 8, 1), 2, filters=4)
train(conv, rng.random((3, 4, 8, 8, 1), "float32"), y, algo="maml")
print("trained")
"""


class CleanLogsTest(absltest.TestCase):
    """Item 15: meta-training logs nothing of its own.

    TensorFlow's C++ logs at their default level: XLA's INFO lines (XLA on
    a CPU by default) and Grappler's PredictCost error on the unknown-rank
    accumulators of a differentiated `tf.while_loop` (MAML's inner steps)
    appeared before.
    """

    def test_training_logs_no_xla_or_cost_model_lines(self):
        proc = subprocess.run(
            [sys.executable, "-c", _TRAIN_TWO_MODELS],
            env=support.python_env(TF_CPP_MIN_LOG_LEVEL="0"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertIn("trained", proc.stdout, proc.stderr)
        for line in (
            "XLA",
            "PredictCost",
            "while_loop",
            "retracing",
            "AutoGraph",
        ):
            self.assertNotIn(line, proc.stderr)


if __name__ == "__main__":
    absltest.main()
