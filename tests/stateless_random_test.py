"""keras_ga.stateless_random against TensorFlow's stateless ops."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import stateless_random as sr

# Keys of every sign and size, as `(seed, task index)` and derived keys are.
KEYS = [
    (0, 0),
    (1, 5),
    (-3, 2**40 + 7),
    (123456789012, -1),
    (2**63 - 1, -(2**63)),
    (7, 0x3C0A7A5E00000001),
]
SHAPES = [[], [1], [3], [4], [5], [2, 7], [4800]]


def tf_key(key):
    return tf.constant(key, tf.int64)


class StatelessRandomTest(parameterized.TestCase):
    @parameterized.parameters(*KEYS)
    def test_uniform_is_tensorflows_bit_for_bit(self, *key):
        for shape in SHAPES:
            np.testing.assert_array_equal(
                sr.uniform(shape, key),
                tf.random.stateless_uniform(shape, tf_key(key)).numpy(),
            )
        np.testing.assert_array_equal(
            sr.uniform([9], key, -5.0, 5.0),
            tf.random.stateless_uniform([9], tf_key(key), -5.0, 5.0).numpy(),
        )

    @parameterized.parameters(*KEYS)
    def test_integers_and_keys_are_tensorflows(self, *key):
        for shape in SHAPES:
            expected = tf.random.stateless_uniform(
                shape, tf_key(key), None, None, tf.int64
            )
            np.testing.assert_array_equal(
                sr.uniform_full_int64(shape, key), expected.numpy()
            )
            expected = tf.random.stateless_uniform(
                shape, tf_key(key), 3, 40, tf.int32
            )
            np.testing.assert_array_equal(
                sr.uniform_int(shape, key, 3, 40), expected.numpy()
            )
        for num in (1, 2, 3, 8):
            np.testing.assert_array_equal(
                sr.split(key, num), tf.random.split(tf_key(key), num).numpy()
            )
        np.testing.assert_array_equal(
            sr.fold_in(key, 1), tf.random.fold_in(tf_key(key), 1).numpy()
        )

    def test_int32_keys_are_read_as_tensorflow_reads_them(self):
        key = np.array([-5, 2**31 - 1], np.int32)
        np.testing.assert_array_equal(
            sr.uniform([6], key),
            tf.random.stateless_uniform([6], tf.constant(key)).numpy(),
        )

    @parameterized.parameters(*KEYS)
    def test_shuffle_is_tensorflows(self, *key):
        for size in (0, 1, 2, 3, 5, 10, 25, 75, 300):
            values = np.arange(2 * size).reshape(size, 2)
            np.testing.assert_array_equal(
                sr.shuffle(values, key),
                tf.random.experimental.stateless_shuffle(
                    values, tf_key(key)
                ).numpy(),
            )

    @parameterized.parameters(*KEYS)
    def test_normal_is_tensorflows_to_float32_rounding(self, *key):
        for shape in SHAPES:
            expected = tf.random.stateless_normal(shape, tf_key(key)).numpy()
            actual = sr.normal(shape, key)
            self.assertEqual(actual.shape, expected.shape)
            self.assertEqual(actual.dtype, np.float32)
            # sin of a float32 angle in [0, 2 pi) is good to ulp(2 pi) = 5e-7
            # absolute, times a radius up to about 5.7.
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=3e-6)

    def test_streams_differ_by_key(self):
        a, b = sr.uniform([100], (0, 1)), sr.uniform([100], (0, 2))
        self.assertLess(np.mean(a == b), 0.05)
        self.assertTrue(np.all((0 <= a) & (a < 1)))

    def test_bad_key(self):
        with self.assertRaisesRegex(ValueError, r"`key`.*shape \(3,\)"):
            sr.uniform([2], (1, 2, 3))
        with self.assertRaisesRegex(ValueError, r"`key`.*float64"):
            sr.uniform([2], np.array([1.0, 2.0]))
        with self.assertRaisesRegex(ValueError, "minval=4, maxval=4"):
            sr.uniform_int([2], (0, 0), 4, 4)


if __name__ == "__main__":
    absltest.main()
