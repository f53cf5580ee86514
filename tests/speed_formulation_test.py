"""Tests of how MetaModel's step is compiled: traces, graph size, formulations.

- The step is traced once per `fit`, for any meta-batch size N.
- Its graph does not grow with N, nor with the inner steps k for
  first-order MAML and Reptile (a tf.while_loop); second-order MAML
  unrolls its k steps. It holds no host callbacks (py_function).
- `task_execution="map"` and `"vectorized"` give the same updates, and so
  do the XLA-compiled step (`jit_compile=True`) and the plain one.
- `"auto"` resolves as documented.
"""

from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga


def mlp(batch_norm=False):
    layers = [keras.Input((1,)), keras.layers.Dense(16, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    return keras.Sequential(layers)


def image_batch_norm():
    """BatchNorm of 4-D features, as in a conv net, without a conv."""
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Reshape((2, 2, 4)),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )


def traces_of_python_if(n):
    """A probe AutoGraph converts (from inside a tf.function)."""
    if n > 2:
        return [n]
    return []


def tiny_conv():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def sine_episode(n, s=6, q=5, seed=0):
    rng = np.random.default_rng(seed)
    amp, phase = rng.uniform(0.5, 2, (n, 1, 1)), rng.uniform(0, 3, (n, 1, 1))
    sx, qx = rng.uniform(-3, 3, (n, s, 1)), rng.uniform(-3, 3, (n, q, 1))
    f32 = np.float32
    return {
        "support_x": sx.astype(f32),
        "support_y": (amp * np.sin(sx + phase)).astype(f32),
        "query_x": qx.astype(f32),
        "query_y": (amp * np.sin(qx + phase)).astype(f32),
    }


def make(base_fn=mlp, loss="mse", jit_compile="auto", **kwargs):
    keras.utils.set_random_seed(3)
    kwargs.setdefault("inner_learning_rate", 0.05)
    model = keras_ga.MetaModel(base_fn(), **kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(1.0), loss=loss, jit_compile=jit_compile
    )
    return model


def updated_weights(model, episode):
    model.train_on_batch(episode)
    return [v.numpy() for v in model.base.weights]


def assert_vectorized_gives_map_updates(episode, **kwargs):
    """One step with each task execution; returns the map's weights."""
    expected = updated_weights(make(task_execution="map", **kwargs), episode)
    actual = updated_weights(
        make(task_execution="vectorized", **kwargs), episode
    )
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6)
    return expected


def graph_ops(concrete):
    """Op types of a traced function, its nested functions included."""
    graph_def = concrete.graph.as_graph_def()
    ops = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        ops += [node.op for node in function.node_def]
    return ops


def traced_step(model, n):
    """The concrete train step of `model` for a meta-batch of `n` tasks."""
    model.optimizer.build(model.base.trainable_variables)
    spec = {
        k: tf.TensorSpec([n, *v.shape[1:]], v.dtype)
        for k, v in sine_episode(1).items()
    }
    return tf.function(model.train_step).get_concrete_function(spec)


class TraceTest(parameterized.TestCase):
    @parameterized.parameters(
        ("map", "sgd"),
        ("vectorized", "sgd"),
        # Adam's slots, if created in the first trace, cause a second one.
        ("map", "adam"),
    )
    def test_fit_traces_step_once_for_any_meta_batch_size(
        self, execution, optimizer
    ):
        traces = []

        class Counting(keras_ga.MetaModel):
            def train_step(self, data):
                traces.append(data["support_x"].shape)  # runs when traced
                return super().train_step(data)

        keras.utils.set_random_seed(0)
        model = Counting(mlp(), algo="maml", task_execution=execution)
        model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
        sizes = [4, 8, 4, 6, 8]
        signature = {
            k: tf.TensorSpec([None, *v.shape[1:]], v.dtype)
            for k, v in sine_episode(1).items()
        }
        dataset = tf.data.Dataset.from_generator(
            lambda: (sine_episode(n, seed=n) for n in sizes),
            output_signature=signature,
        )
        history = model.fit(dataset, epochs=2, verbose=0)
        self.assertLen(history.history["loss"], 2)
        self.assertLen(traces, 1)

    @parameterized.parameters("maml", "fomaml", "reptile")
    def test_graph_size_does_not_grow_with_tasks(self, algo):
        sizes = {}
        for steps in (1, 5):
            model = make(
                algo=algo,
                inner_steps=steps,
                inner_batch_size=4,  # the same sub-batching for any k
                task_execution="map",
                jit_compile=False,
            )
            per_n = {len(graph_ops(traced_step(model, n))) for n in (4, 16)}
            self.assertLen(per_n, 1)
            sizes[steps] = per_n.pop()
        if algo == "maml":
            # Unrolled second-order steps (see `InnerLoop.run`).
            self.assertGreater(sizes[5], sizes[1])
        else:
            self.assertEqual(sizes[5], sizes[1])

    def test_autograph_leaves_the_steps_unconverted(self):
        # tf.function(train_step), as in strategy.run custom loops: AutoGraph
        # would otherwise transform the source of every step function.
        from tensorflow.python.autograph.impl import api

        model = make(algo="maml", task_execution="map", jit_compile=False)
        with mock.patch.object(
            api, "_convert_actual", wraps=api._convert_actual
        ) as convert:
            traced_step(model, 4)
            tf.function(lambda: len(traces_of_python_if(3)))()
        converted = {c.args[0].__name__ for c in convert.call_args_list}
        # The probe shows the patch sees conversions when they happen.
        self.assertIn("traces_of_python_if", converted)
        self.assertEmpty(
            converted
            & {"train_step", "run_tasks", "one_task", "train", "adapt", "body"}
        )

    def test_step_has_no_host_callbacks(self):
        model = make(algo="maml", task_execution="map", jit_compile=False)
        ops = set(graph_ops(traced_step(model, 4)))
        self.assertIn("MatMul", ops)
        self.assertEmpty(ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"})


class FormulationTest(parameterized.TestCase):
    @parameterized.parameters(
        ("maml", "agreement", False),
        ("fomaml", "uniform", True),
        ("reptile", "agreement", True),
    )
    def test_vectorized_tasks_give_map_updates(
        self, algo, weighting, batch_norm
    ):
        # inner_batch_size 4 < 6 support examples: random sub-batches.
        kwargs = dict(
            algo=algo,
            weighting=weighting,
            inner_steps=3,
            inner_batch_size=4,
            base_fn=lambda: mlp(batch_norm=batch_norm),
            jit_compile=False,
        )
        expected = assert_vectorized_gives_map_updates(
            sine_episode(5), **kwargs
        )
        self.assertFalse(
            np.allclose(expected[0], make(**kwargs).base.weights[0])
        )

    @parameterized.parameters("fomaml", "maml")
    def test_vectorized_batch_norm_gives_map_updates(self, algo):
        # The vectorizer of the fused batch-norm kernel fails (see
        # `batch_norm.element_wise`).
        kwargs = dict(
            base_fn=image_batch_norm,
            algo=algo,
            inner_steps=2,
            jit_compile=False,
        )
        assert_vectorized_gives_map_updates(sine_episode(3), **kwargs)

    def test_vectorized_is_refused_for_a_conv_net(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`task_execution='vectorized'` needs layers .* cannot batch "
            r"the filter gradient of a convolution .* Received: "
            r"task_execution='vectorized' for model .* with Conv2D layer",
        ):
            make(
                base_fn=tiny_conv,
                loss="mse",
                task_execution="vectorized",
                jit_compile=False,
            )

    @parameterized.parameters(
        ("maml", False),
        ("fomaml", False),
        ("reptile", False),
        # The fused BatchNorm kernel and its second derivative under XLA.
        ("maml", True),
    )
    def test_xla_step_gives_the_same_meta_update_on_mlp(self, algo, batch_norm):
        # Whole-support inner batches: with random sub-batches (Reptile's
        # default) the XLA step draws other ones, as TF's stateless RNG with
        # a tensor seed gives another stream under XLA.
        kwargs = dict(
            algo=algo,
            inner_steps=3,
            inner_batch_size=6,
            task_execution="map",
            base_fn=lambda: mlp(batch_norm=batch_norm),
        )
        episode = sine_episode(6)
        exact = make(jit_compile=False, **kwargs)
        xla = make(jit_compile=True, **kwargs)
        before = [v.numpy() for v in exact.base.weights]
        expected = updated_weights(exact, episode)
        actual = updated_weights(xla, episode)
        for a, e, b in zip(actual, expected, before):
            np.testing.assert_allclose(a - b, e - b, rtol=1e-3, atol=1e-6)
        self.assertTrue(xla.jit_compile)


class AutoTest(parameterized.TestCase):
    def test_mlp_on_a_cpu_follows_keras_no_xla_and_vectorizes(self):
        model = make(algo="maml")
        plain = mlp()
        plain.compile(optimizer="sgd", loss="mse")
        self.assertFalse(plain.jit_compile)  # Keras' rule on a CPU
        self.assertFalse(model.jit_compile)
        self.assertEqual(model.task_execution, "auto")
        self.assertEqual(model.resolved_task_execution, "vectorized")

    def test_mlp_with_an_accelerator_defaults_to_xla_and_map(self):
        devices = tf.config.list_physical_devices() + [
            tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
        ]
        with mock.patch.object(
            tf.config, "list_physical_devices", return_value=devices
        ):
            model = make(algo="maml")
            conv = make(
                base_fn=tiny_conv,
                loss="mse",
            )
        self.assertTrue(model.jit_compile)
        self.assertEqual(model.resolved_task_execution, "map")
        self.assertFalse(conv.jit_compile)

    def test_mlp_without_xla_vectorizes(self):
        model = make(algo="maml", jit_compile=False)
        self.assertEqual(model.resolved_task_execution, "vectorized")

    def test_conv_defaults_to_no_xla_and_map(self):
        model = make(
            base_fn=tiny_conv,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.assertFalse(model.jit_compile)
        self.assertEqual(model.resolved_task_execution, "map")

    def test_explicit_choice_wins(self):
        model = make(task_execution="map", jit_compile=False)
        self.assertEqual(model.resolved_task_execution, "map")

    def test_no_xla_and_map_under_a_distribution_strategy(self):
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            model = make(algo="maml")
            self.assertEqual(model.resolved_task_execution, "map")
        self.assertFalse(model.jit_compile)

    def test_task_execution_in_config(self):
        model = make(task_execution="vectorized")
        config = model.get_config()
        self.assertEqual(config["task_execution"], "vectorized")
        clone = keras_ga.MetaModel.from_config(config)
        self.assertEqual(clone.task_execution, "vectorized")

    def test_unknown_task_execution_raises(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`task_execution` must be one of \['auto', 'map', 'vectorized'\]"
            r"\. Received: task_execution='pfor'",
        ):
            keras_ga.MetaModel(mlp(), task_execution="pfor")


if __name__ == "__main__":
    absltest.main()
