"""Tests of keras_ga.layers.BatchNormalization: both of its computations."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga


def built_layer(shape, dtype="float32", **kwargs):
    layer = keras_ga.layers.BatchNormalization(dtype=dtype, **kwargs)
    layer.build(shape)
    rng = np.random.default_rng(0)
    channels = shape[kwargs.get("axis", -1)]
    layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(dtype))
    layer.beta.assign(rng.normal(size=channels).astype(dtype))
    return layer


def traced_op_types(layer, x):
    fn = tf.function(lambda t: layer(t, training=True))
    graph = fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


class ComputationTest(parameterized.TestCase):
    @parameterized.parameters(((6, 5, 5, 3),), ((10, 4),), ((2, 3, 7, 2),))
    def test_fused_equals_elementwise(self, shape):
        layer = built_layer(shape)
        x = tf.constant(
            np.random.default_rng(1).normal(2.0, 3.0, shape), "float32"
        )
        fused = [t.numpy() for t in layer._fused(x)]
        elementwise = [t.numpy() for t in layer._elementwise(x)]
        for a, b in zip(fused, elementwise):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        # Biased variance, as the stock layer's moving statistics take.
        np.testing.assert_allclose(
            fused[2], np.var(x.numpy().reshape(-1, shape[-1]), 0), rtol=1e-4
        )

    def test_float32_channels_last_uses_the_fused_kernel(self):
        x = tf.zeros((4, 3, 3, 2))
        ops32 = traced_op_types(built_layer(x.shape), x)
        self.assertIn("FusedBatchNormV3", ops32)
        x64 = tf.zeros((4, 3, 3, 2), "float64")
        ops64 = traced_op_types(built_layer(x64.shape, "float64"), x64)
        self.assertNotIn("FusedBatchNormV3", ops64)

    @parameterized.parameters(
        dict(epsilon=1e-6),  # the kernel would raise it to 1.001e-5
        dict(axis=1),
    )
    def test_unfusable_settings_use_the_elementwise_formula(self, **kwargs):
        x = tf.zeros((4, 3, 3, 2))
        layer = built_layer(x.shape, **kwargs)
        self.assertNotIn("FusedBatchNormV3", traced_op_types(layer, x))

    def test_moving_statistics_match_the_stock_layer(self):
        shape = (8, 4, 4, 3)
        x = np.random.default_rng(2).normal(1.0, 2.0, shape).astype("float32")
        ours = built_layer(shape, momentum=0.5)
        stock = keras.layers.BatchNormalization(momentum=0.5)
        stock.build(shape)
        stock.set_weights(ours.get_weights())
        np.testing.assert_allclose(
            ours(x, training=True), stock(x, training=True), atol=1e-5
        )
        for a, b in zip(
            ours.non_trainable_weights, stock.non_trainable_weights
        ):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)

    def test_inference_uses_moving_statistics(self):
        shape = (8, 3)
        layer = built_layer(shape)
        layer.moving_mean.assign([1.0, 2.0, 3.0])
        layer.moving_variance.assign([4.0, 4.0, 4.0])
        x = np.ones(shape, "float32")
        expected = (x - [1.0, 2.0, 3.0]) / np.sqrt(4.0 + layer.epsilon)
        expected = expected * layer.gamma.numpy() + layer.beta.numpy()
        np.testing.assert_allclose(layer(x, training=False), expected, 1e-5)


def conv_base(dtype, stock=False):
    bn = (
        keras.layers.BatchNormalization
        if stock
        else (keras_ga.layers.BatchNormalization)
    )
    layers = [keras.Input((8, 8, 1), dtype=dtype)]
    for _ in range(2):
        layers += [
            keras.layers.Conv2D(3, 3, padding="same", dtype=dtype),
            bn(dtype=dtype),
            keras.layers.ReLU(dtype=dtype),
            keras.layers.MaxPooling2D(2, dtype=dtype),
        ]
    layers += [
        keras.layers.Flatten(dtype=dtype),
        keras.layers.Dense(3, dtype=dtype),
    ]
    return keras.Sequential(layers)


def maml_gradient(base, dtype, exact=True):
    rng = np.random.default_rng(0)
    episode = {
        "support_x": rng.normal(size=(1, 6, 8, 8, 1)).astype(dtype),
        "support_y": np.array([[0, 1, 2, 0, 1, 2]], "int32"),
        "query_x": rng.normal(size=(1, 6, 8, 8, 1)).astype(dtype),
        "query_y": np.array([[2, 1, 0, 0, 1, 2]], "int32"),
    }
    model = keras_ga.MetaModel(
        base,
        algo="maml",
        weighting="uniform",
        inner_steps=2,
        inner_learning_rate=0.5,
        exact_batch_norm=exact,
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, dtype=dtype
        ),
    )
    grads = model.run_tasks(episode, training=True).outer_grads
    return np.concatenate([g[0].numpy().ravel() for g in grads]).astype(
        "float64"
    )


class SecondOrderTest(absltest.TestCase):
    """The fused float32 path against the float64 element-wise path.

    The float64 path itself is checked against finite differences in
    meta_model_test.FiniteDifferenceTest; here the fused kernel's second
    derivative must agree with it to float32 round-off.
    """

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.weights = conv_base("float64").get_weights()
        keras.utils.set_random_seed(0)
        reference = conv_base("float64")
        reference.set_weights(self.weights)
        self.reference = maml_gradient(reference, "float64")

    def relative_error(self, stock):
        base = conv_base("float32", stock=stock)
        base.set_weights([w.astype("float32") for w in self.weights])
        grad = maml_gradient(base, "float32", exact=not stock)
        return np.linalg.norm(grad - self.reference) / np.linalg.norm(
            self.reference
        )

    def test_fused_meta_gradient_matches_float64(self):
        self.assertLess(self.relative_error(stock=False), 1e-5)

    def test_stock_float32_meta_gradient_is_off(self):
        # The same comparison can fail: the stock layer's is far off.
        self.assertGreater(self.relative_error(stock=True), 1e-3)


if __name__ == "__main__":
    absltest.main()
