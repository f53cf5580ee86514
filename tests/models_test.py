"""Tests of the shared base models (keras_ga.models)."""

import os
import tempfile
import warnings

import keras
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import models


class Conv4Test(parameterized.TestCase):
    @parameterized.parameters(
        ((28, 28, 1), 5, 64, False, 2 * 2 * 64),
        ((84, 84, 3), 5, 32, False, 6 * 6 * 32),
        ((28, 28, 1), 20, 64, True, 64),
    )
    def test_shapes(self, shape, ways, filters, pool, features):
        model = models.conv4(shape, ways, filters, global_pool=pool)
        self.assertEqual(model.output_shape, (None, ways))
        self.assertEqual(model.layers[-1].kernel.shape, (features, ways))
        convs = [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)
        ]
        self.assertLen(convs, 4)
        self.assertTrue(all(c.filters == filters for c in convs))

    def test_strided_is_the_reptile_reference_network(self):
        model = models.conv4((28, 28, 1), 5, 64, downsample="stride")
        # 28 -> 14 -> 7 -> 4 -> 2 by stride-2 'same' convolutions.
        self.assertEqual(model.layers[-1].kernel.shape, (2 * 2 * 64, 5))
        kinds = [type(layer).__name__ for layer in model.layers]
        self.assertEqual(
            kinds,
            ["Conv2D", "BatchNormalization", "ReLU"] * 4 + ["Flatten", "Dense"],
        )

    def test_batch_norm_is_exact_and_kept_by_meta_model(self):
        base = models.conv4((28, 28, 1), 5, 8, bn_momentum=0.9)
        norms = [layer for layer in base.layers if "bn" in layer.name]
        self.assertTrue(
            all(
                type(layer) is keras_ga.layers.BatchNormalization
                for layer in norms
            )
        )
        self.assertEqual({layer.momentum for layer in norms}, {0.9})
        meta = keras_ga.MetaModel(base, algo="fomaml")
        self.assertIs(meta.base, base)  # nothing to swap

    def test_save_and_load(self):
        base = models.conv4((12, 12, 1), 3, 4)
        x = np.random.default_rng(0).uniform(size=(2, 12, 12, 1))
        path = os.path.join(tempfile.mkdtemp(), "conv4.keras")
        base.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6
        )

    @parameterized.parameters(
        (dict(num_classes=0), "`num_classes` must be a positive"),
        (dict(filters=2.5), "`filters` must be a positive"),
        (dict(blocks=0), "`blocks` must be a positive"),
        (dict(input_shape=(28, 28)), "`input_shape` must be"),
        (
            dict(input_shape=(28, 0, 1)),
            r"`input_shape` must be \(height, width, channels\), all "
            r"positive: the shape of one example\. "
            r"Received: input_shape=\(28, 0, 1\)",
        ),
        (dict(input_shape=28), r"Received: input_shape=28"),
        (dict(downsample="avg"), r"`downsample`.*Received.*avg"),
    )
    def test_errors(self, kwargs, message):
        args = {"input_shape": (28, 28, 1), "num_classes": 5, **kwargs}
        with self.assertRaisesRegex(ValueError, message):
            models.conv4(**args)


class MlpTest(absltest.TestCase):
    def test_paper_sine_network(self):
        model = models.mlp(1, 1, (64, 64))
        # 1*64+64 + 64*64+64 + 64*1+1
        self.assertEqual(model.count_params(), 4353)
        self.assertEqual(model.output_shape, (None, 1))

    def test_input_shape_as_for_conv4(self):
        # The same kind of argument as conv4's: a shape tuple (an int d is
        # (d,)); examples of several axes are flattened first.
        for shape in ((3,), 3, [3]):
            model = models.mlp(shape, 2, (8,))
            self.assertEqual(model.input_shape, (None, 3))
            self.assertEqual(model.count_params(), 3 * 8 + 8 + 8 * 2 + 2)
        images = models.mlp((28, 28, 1), 5, (16,))
        self.assertEqual(images.input_shape, (None, 28, 28, 1))
        self.assertEqual(images.output_shape, (None, 5))
        self.assertEqual(images.count_params(), 784 * 16 + 16 + 16 * 5 + 5)
        keyword = models.mlp(input_shape=(28, 28, 1), output_dim=5)
        self.assertEqual(keyword.input_shape, (None, 28, 28, 1))
        self.assertEqual(models.mlp().input_shape, (None, 1))

    def test_input_dim_is_deprecated_but_works(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = models.mlp(input_dim=3, output_dim=2, hidden=(8,))
        self.assertEqual(model.input_shape, (None, 3))
        self.assertTrue(
            any(
                issubclass(w.category, DeprecationWarning)
                and "input_shape=(input_dim,)" in str(w.message)
                for w in caught
            )
        )
        with self.assertRaisesRegex(
            ValueError,
            r"Pass `input_shape` only.*Received: input_shape=\(3,\), "
            r"input_dim=3",
        ):
            models.mlp((3,), input_dim=3)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "Received: hidden=0"):
            models.mlp(1, 1, (64, 0))
        with self.assertRaisesRegex(
            ValueError,
            r"`input_shape` must be an int or a tuple of ints, all positive"
            r".*Received: input_shape=0",
        ):
            models.mlp(0)
        with self.assertRaisesRegex(ValueError, r"Received: input_shape=\(\)"):
            models.mlp(())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with self.assertRaisesRegex(ValueError, "`input_dim` must be"):
                models.mlp(input_dim=0)
        with self.assertRaisesRegex(ValueError, "`output_dim` must be"):
            models.mlp(1, -1)


if __name__ == "__main__":
    absltest.main()
