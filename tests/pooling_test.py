"""Tests of keras_ga.layers.MaxPooling2D against the stock layer."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from tests import conv_maml

# Even and odd sizes, windows of 2 and 3, both paddings: SAME pads an odd
# 7 after (windows of 2) and 8 before and after (windows of 3).
CASES = [
    dict(shape=(3, 8, 6, 2), pool=2, padding="valid"),
    dict(shape=(3, 7, 5, 2), pool=2, padding="valid"),
    dict(shape=(3, 7, 5, 2), pool=2, padding="same"),
    dict(shape=(2, 8, 7, 3), pool=3, padding="same"),
    dict(shape=(2, 8, 7, 3), pool=3, padding="valid"),
    dict(shape=(2, 6, 9, 1), pool=(2, 3), padding="same"),
]


def layers(pool, **kwargs):
    """keras_ga's layer and the stock one, with the same arguments."""
    return (
        keras_ga.layers.MaxPooling2D(pool, **kwargs),
        keras.layers.MaxPooling2D(pool, **kwargs),
    )


def derivatives(layer, x, u, w, v):
    """y, then the first three derivatives of a loss cubic in y.

    L = sum(u y^3) makes dL/dy depend on y, so that the second derivative
    goes through both the gradient's derivative and the pool's, and the
    third through the derivative of the gradient's derivative.
    """
    with tf.GradientTape() as third:
        third.watch(x)
        with tf.GradientTape() as second:
            second.watch(x)
            with tf.GradientTape() as first:
                first.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(u * y**3)
            dx = first.gradient(loss, x)
            z = tf.reduce_sum(w * dx)
        ddx = second.gradient(z, x)
        t = tf.reduce_sum(v * ddx * ddx)
    dddx = third.gradient(t, x)
    return [a.numpy() for a in (y, dx, ddx, dddx)]


def random_inputs(shape, y_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=shape), dtype)
    u = tf.constant(rng.normal(size=y_shape), dtype)
    w, v = (tf.constant(rng.normal(size=shape), dtype) for _ in range(2))
    return x, u, w, v


def op_types(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


class DerivativesTest(parameterized.TestCase):
    @parameterized.parameters(*CASES)
    def test_equal_to_stock_up_to_third_order(self, shape, pool, padding):
        for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
            ours, stock = layers(pool, padding=padding, dtype=dtype)
            y_shape = stock.compute_output_shape(shape)
            inputs = random_inputs(shape, y_shape, dtype)
            expected = derivatives(stock, *inputs)
            self.assertGreater(np.abs(expected[3]).max(), 0.0)
            for order, (a, b) in enumerate(
                zip(derivatives(ours, *inputs), expected)
            ):
                np.testing.assert_allclose(
                    a,
                    b,
                    rtol=rtol,
                    atol=rtol * np.abs(b).max(),
                    err_msg=f"{dtype} derivative {order}",
                )

    def test_second_derivative_is_the_gradients_transpose_with_ties(self):
        # After a ReLU most windows tie at zero; whichever element the
        # gradient picks, the second derivative must pick the same one:
        # <grad(dy), a> == <dy, second(a)>.
        x = tf.nn.relu(
            tf.constant(
                np.random.default_rng(4).normal(-1.0, 1.0, (4, 8, 8, 3)),
                "float32",
            )
        )
        layer = keras_ga.layers.MaxPooling2D(2)
        rng = np.random.default_rng(5)
        dy = tf.constant(rng.normal(size=(4, 4, 4, 3)), "float32")
        a = tf.constant(rng.normal(size=x.shape), "float32")

        @tf.function
        def both(dy, a):
            with tf.GradientTape() as outer:
                outer.watch(dy)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = layer(x)
                dx = inner.gradient(y, x, output_gradients=dy)
                z = tf.reduce_sum(dx * a)
            return dx, outer.gradient(z, dy)

        dx, second = both(dy, a)
        self.assertGreater(
            float(tf.reduce_mean(tf.cast(x == 0, "float32"))), 0.5
        )
        np.testing.assert_allclose(
            float(tf.reduce_sum(dx * a)),
            float(tf.reduce_sum(dy * second)),
            rtol=1e-5,
        )


class ComputationTest(parameterized.TestCase):
    def second_order_ops(self, layer):
        x = tf.zeros((2, 8, 8, 3))

        def second(x):
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    loss = tf.reduce_sum(layer(x) ** 2)
                dx = inner.gradient(loss, x)
                z = tf.reduce_sum(dx**2)
            return outer.gradient(z, x)

        return op_types(second, x)

    def test_second_derivative_without_eigen_gradgrad(self):
        ours, stock = layers(2, padding="same")
        self.assertIn("MaxPoolGradGrad", self.second_order_ops(stock))
        ops = self.second_order_ops(ours)
        self.assertNotIn("MaxPoolGradGrad", ops)
        self.assertIn("AvgPool", ops)

    @parameterized.parameters(
        dict(pool=3, strides=2, data_format="channels_last"),
        dict(pool=2, strides=None, data_format="channels_first"),
    )
    def test_other_settings_use_the_stock_computation(
        self, pool, strides, data_format
    ):
        ours, stock = layers(pool, strides=strides, data_format=data_format)
        x = tf.constant(
            np.random.default_rng(6).normal(size=(2, 3, 9, 9)), "float32"
        )
        ops = self.second_order_ops(ours)
        self.assertNotIn("AvgPool", ops)
        self.assertEqual(ops, self.second_order_ops(stock))
        np.testing.assert_array_equal(ours(x), stock(x))

    def test_config_round_trip(self):
        layer = keras_ga.layers.MaxPooling2D(3, strides=3, padding="same")
        clone = keras.layers.deserialize(keras.layers.serialize(layer))
        self.assertIs(type(clone), keras_ga.layers.MaxPooling2D)
        self.assertEqual(clone.get_config(), layer.get_config())


class MetaGradientTest(absltest.TestCase):
    """A float32 MAML meta-gradient through the layer against float64."""

    def test_matches_float64_plain_and_compiled(self):
        for compiled in (False, True):
            error = conv_maml.float32_relative_error(
                fast_pool=True, compiled=compiled
            )
            self.assertLess(error, 1e-5, f"compiled={compiled}")


if __name__ == "__main__":
    absltest.main()
