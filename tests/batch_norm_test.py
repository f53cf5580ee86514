"""Tests of keras_ga.layers.BatchNormalization: both of its computations."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from tests import conv_maml


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
        gamma, beta = layer.gamma, layer.beta
        fused = [t.numpy() for t in layer._fused(x, gamma, beta)]
        elementwise = [t.numpy() for t in layer._elementwise(x, gamma, beta)]
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

    @parameterized.parameters((8, 4, 4, 3), (10, 4))
    def test_default_momentum_blends_as_written(self, *shape):
        # Momentum 0.99: swapping momentum and 1 - momentum would move the
        # statistics 99% of the way to the batch's (0.5 hides it).
        x = np.random.default_rng(3).normal(1.0, 2.0, shape).astype("float32")
        ours = built_layer(shape)
        self.assertEqual(ours.momentum, 0.99)
        stock = keras.layers.BatchNormalization()
        stock.build(shape)
        stock.set_weights(ours.get_weights())
        ours.moving_mean.assign(np.full(shape[-1], 0.5, "float32"))
        stock.moving_mean.assign(np.full(shape[-1], 0.5, "float32"))
        ours(x, training=True)
        stock(x, training=True)
        axes = tuple(range(len(shape) - 1))
        np.testing.assert_allclose(
            ours.moving_mean.numpy(),
            0.99 * 0.5 + 0.01 * x.mean(axis=axes),
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            ours.moving_variance.numpy(),
            0.99 * 1.0 + 0.01 * x.var(axis=axes),
            rtol=1e-5,
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


class SecondOrderTest(absltest.TestCase):
    """The fused float32 path against the float64 element-wise path.

    The float64 path itself is checked against finite differences in
    meta_model_test.FiniteDifferenceTest; here the fused kernel's second
    derivative must agree with it to float32 round-off.
    """

    def relative_error(self, stock, compiled=False):
        return conv_maml.float32_relative_error(
            stock_bn=stock, compiled=compiled
        )

    def test_fused_meta_gradient_matches_float64(self):
        self.assertLess(self.relative_error(stock=False), 1e-5)

    def test_compiled_fused_meta_gradient_matches_float64(self):
        # In a tf.function Grappler fuses the kernel with the next ReLU.
        self.assertLess(self.relative_error(stock=False, compiled=True), 1e-5)

    def test_stock_float32_meta_gradient_is_off(self):
        # The same comparison can fail: the stock layer's is far off.
        self.assertGreater(self.relative_error(stock=True), 1e-3)


class ClosedFormDerivativesTest(absltest.TestCase):
    """The fused path's derivatives against the float64 element-wise one.

    The loss makes dL/dy depend on y, so that every input of the
    backward (g, x, gamma) carries a cotangent in the second derivative;
    the third derivative differentiates the closed form itself.
    """

    def derivatives(self, dtype):
        rng = np.random.default_rng(3)
        shape = (6, 3, 2, 4)
        x = tf.constant(rng.normal(1.0, 2.0, shape), dtype)
        u, w = (tf.constant(rng.normal(size=shape), dtype) for _ in range(2))
        v = tf.constant(rng.normal(size=shape[-1]), dtype)
        layer = built_layer(shape, dtype)
        gamma = layer.gamma
        with tf.GradientTape() as third:
            third.watch(x)
            with tf.GradientTape() as second:
                second.watch(x)
                with tf.GradientTape() as first:
                    first.watch(x)
                    y = layer(x, training=True)
                    loss = tf.reduce_sum(u * y * y)
                dx, dgamma = first.gradient(loss, [x, gamma])
                z = tf.reduce_sum(w * dx) + tf.reduce_sum(v * dgamma)
            ddx, ddgamma = second.gradient(z, [x, gamma])
            t = tf.reduce_sum(w * ddx * ddx) + tf.reduce_sum(v * ddgamma)
        dddx = third.gradient(t, x)
        return [a.numpy() for a in (dx, dgamma, ddx, ddgamma, dddx)]

    def test_match_float64_up_to_third_order(self):
        # float32 takes the fused path (test_float32_channels_last_uses_
        # the_fused_kernel), float64 the element-wise formula.
        ours = self.derivatives("float32")
        reference = self.derivatives("float64")
        for order, (a, b) in enumerate(zip(ours, reference)):
            scale = np.abs(b).max()
            np.testing.assert_allclose(
                a / scale, b / scale, atol=1e-5, err_msg=f"output {order}"
            )


if __name__ == "__main__":
    absltest.main()
