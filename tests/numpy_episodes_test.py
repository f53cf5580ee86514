"""keras_ga.numpy_episodes: the tf.data pipelines' tasks, in NumPy."""

import ast
import pathlib

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import numpy_episodes
from keras_ga import sampler
from keras_ga.datasets import sine
from tests import support

PACKAGE = pathlib.Path(keras_ga.__file__).parent


def id_images(num_classes=12, per_class=7, dtype=np.float32):
    """Class-major images whose pixels hold `1 + class * M + example`."""
    ids = 1 + np.arange(num_classes * per_class).astype(dtype)
    return np.tile(ids.reshape(num_classes, per_class, 1, 1), (1, 1, 2, 3))


def first_batches(tf_dataset, numpy_dataset, count):
    pairs = zip(tf_dataset.as_numpy_iterator(), range(count))
    return [(a, numpy_dataset[b]) for a, b in pairs]


class FewShotEpisodesTest(parameterized.TestCase):
    @parameterized.product(
        shuffle_examples=(True, False),
        corruption=((0.0, "shuffle"), (0.5, "shuffle"), (0.5, "permute")),
    )
    def test_same_tasks_as_the_tf_data_pipeline(
        self, shuffle_examples, corruption
    ):
        fraction, kind = corruption
        kwargs = dict(
            ways=4,
            shots=2,
            queries=3,
            meta_batch_size=3,
            seed=11,
            shuffle_examples=shuffle_examples,
            corrupt_fraction=fraction,
            corruption=kind,
        )
        data = id_images()
        pairs = first_batches(
            sampler.few_shot_episodes(data, **kwargs),
            numpy_episodes.FewShotEpisodes(data, **kwargs),
            4,
        )
        for expected, actual in pairs:
            self.assertEqual(sorted(actual), sorted(expected))
            for key, value in expected.items():
                self.assertEqual(actual[key].dtype, value.dtype, key)
                np.testing.assert_array_equal(actual[key], value, key)

    def test_ragged_uint8_grouped_start_and_transform(self):
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(10), rng.integers(5, 9, size=10))
        images = rng.integers(
            0, 256, size=(labels.size, 4, 4, 1), dtype=np.uint8
        )
        groups = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
        kwargs = dict(
            ways=3,
            shots=1,
            queries=4,
            meta_batch_size=2,
            seed=-4,
            start=5,
            class_groups=groups,
        )

        def tf_transform(task, key):
            task["query_x"] = task["query_x"] + tf.cast(key[0] % 5, tf.float32)
            return task

        def np_transform(task, key):
            task["query_x"] = task["query_x"] + np.float32(key[0] % 5)
            return task

        pairs = first_batches(
            sampler.few_shot_episodes(
                images, labels, transform=tf_transform, **kwargs
            ),
            numpy_episodes.FewShotEpisodes(
                images, labels, transform=np_transform, **kwargs
            ),
            6,
        )
        for expected, actual in pairs:
            for key, value in expected.items():
                np.testing.assert_array_equal(actual[key], value, key)

    def test_real_omniglot_test_split(self):
        test = keras_ga.datasets.load_omniglot(
            data_dir=support.data_dir(), verbose=0
        )["test"]
        kwargs = dict(
            ways=5, shots=1, queries=2, meta_batch_size=4, seed=3, num_tasks=8
        )
        expected = list(
            keras_ga.datasets.omniglot_episodes(
                "test", data_dir=support.data_dir(), verbose=0, **kwargs
            ).as_numpy_iterator()
        )
        actual = list(numpy_episodes.FewShotEpisodes(test, **kwargs))
        self.assertLen(actual, 2)
        for a, e in zip(actual, expected, strict=True):
            for key in e:
                np.testing.assert_array_equal(a[key], e[key], key)

    def test_omniglot_helper_within_alphabet(self):
        kwargs = dict(
            ways=5,
            shots=1,
            queries=1,
            meta_batch_size=3,
            seed=5,
            start=2,
            within_alphabet=True,
            data_dir=support.data_dir(),
            verbose=0,
        )
        numpy_path = keras_ga.datasets.omniglot_episodes(
            "train", pipeline="numpy", **kwargs
        )
        self.assertIsInstance(numpy_path, numpy_episodes.FewShotEpisodes)
        pairs = first_batches(
            keras_ga.datasets.omniglot_episodes("train", **kwargs),
            numpy_path,
            3,
        )
        for expected, actual in pairs:
            for key in expected:
                np.testing.assert_array_equal(actual[key], expected[key], key)

    def test_unknown_pipeline(self):
        with self.assertRaisesRegex(ValueError, "pipeline='jax'"):
            keras_ga.datasets.omniglot_episodes(
                "test",
                ways=5,
                shots=1,
                queries=1,
                meta_batch_size=1,
                seed=0,
                data_dir=support.data_dir(),
                verbose=0,
                pipeline="jax",
            )

    def test_a_py_dataset_with_its_length(self):
        data = id_images()
        fixed = numpy_episodes.FewShotEpisodes(
            data,
            ways=3,
            shots=1,
            queries=1,
            meta_batch_size=2,
            seed=0,
            num_tasks=6,
        )
        self.assertEqual((fixed.num_batches, len(fixed)), (3, 3))
        self.assertLen(list(fixed), 3)
        with self.assertRaisesRegex(IndexError, r"Meta-batch 3 .*\[0, 3\)"):
            fixed[3]
        endless = numpy_episodes.FewShotEpisodes(
            data, ways=3, shots=1, queries=1, meta_batch_size=2, seed=0
        )
        self.assertIsNone(endless.num_batches)
        with self.assertRaisesRegex(TypeError, "no length"):
            len(endless)
        # Meta-batch b of the stream from `start` is b + start from 0.
        later = numpy_episodes.FewShotEpisodes(
            data, ways=3, shots=1, queries=1, meta_batch_size=2, seed=0, start=4
        )
        np.testing.assert_array_equal(
            later[1]["query_x"], endless[5]["query_x"]
        )

    def test_bad_arguments_name_the_argument(self):
        data = id_images()
        base = dict(ways=3, shots=1, queries=1, meta_batch_size=2, seed=0)
        cases = [
            (dict(ways=13), ValueError, "`ways` must be at most .* ways=13"),
            (dict(queries=7), ValueError, "shots \\+ queries=8"),
            (dict(num_tasks=5), ValueError, "num_tasks=5, meta_batch_size=2"),
            (dict(num_tasks=4, start=1), ValueError, "start=1, num_tasks=4"),
            (dict(start=-1), ValueError, "start=-1"),
            (dict(seed=1.5), TypeError, "`seed` must be an int"),
            (dict(corruption="flip"), ValueError, "corruption='flip'"),
            (dict(corrupt_fraction=2), ValueError, "corrupt_fraction=2"),
            (dict(class_groups=[0, 1]), ValueError, "`class_groups`"),
        ]
        for change, error, message in cases:
            with self.subTest(change=change):
                with self.assertRaisesRegex(error, message):
                    numpy_episodes.FewShotEpisodes(data, **{**base, **change})


class SineEpisodesTest(parameterized.TestCase):
    @parameterized.parameters(
        (0.0, "noise"),
        (0.5, "noise"),
        (0.5, "shuffle"),
        (0.5, "wrong_function"),
    )
    def test_same_tasks_as_the_tf_data_pipeline(self, fraction, corruption):
        kwargs = dict(
            shots=5,
            queries=7,
            meta_batch_size=4,
            seed=2,
            start=3,
            phase_range=(0.0, np.pi),
            corrupt_fraction=fraction,
            corruption=corruption,
        )
        pairs = first_batches(
            sine.sine_tasks(**kwargs), numpy_episodes.SineEpisodes(**kwargs), 3
        )
        for expected, actual in pairs:
            for key in ("support_x", "query_x"):
                np.testing.assert_array_equal(actual[key], expected[key])
            for key in ("support_y", "query_y"):
                self.assertEqual(actual[key].dtype, np.float32)
                np.testing.assert_allclose(
                    actual[key], expected[key], rtol=1e-5, atol=1e-5
                )

    def test_sine_tasks_numpy_pipeline(self):
        kwargs = dict(shots=3, queries=4, meta_batch_size=2, seed=8)
        numpy_path = sine.sine_tasks(pipeline="numpy", **kwargs)
        self.assertIsInstance(numpy_path, numpy_episodes.SineEpisodes)
        (expected, actual), *_ = first_batches(
            sine.sine_tasks(**kwargs), numpy_path, 1
        )
        np.testing.assert_array_equal(actual["query_x"], expected["query_x"])
        with self.assertRaisesRegex(ValueError, "return_params=True"):
            sine.sine_tasks(pipeline="numpy", return_params=True, **kwargs)

    def test_params_are_sine_task_params(self):
        episodes = numpy_episodes.SineEpisodes(
            shots=1, queries=1, meta_batch_size=1, seed=9
        )
        amplitude, phase = sine.sine_task_params(5, seed=9)
        for i in range(5):
            a, p = episodes.params(i)
            self.assertEqual((a, p), (amplitude[i], phase[i]))

    def test_bad_range(self):
        with self.assertRaisesRegex(ValueError, r"x_range=\(2, 1\)"):
            numpy_episodes.SineEpisodes(
                shots=1, queries=1, meta_batch_size=1, seed=0, x_range=(2, 1)
            )


class WithoutTensorFlowTest(absltest.TestCase):
    def test_the_numpy_path_imports_no_tensorflow(self):
        """The modules the NumPy episodes import, transitively, never
        import TensorFlow at module level (`keras_ga/__init__.py` aside)."""
        seen, todo = set(), ["numpy_episodes"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            tree = ast.parse((PACKAGE / f"{name}.py").read_text())
            for node in tree.body:  # Module level only.
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [
                        f"{node.module}.{alias.name}" for alias in node.names
                    ]
                else:
                    continue
                for imported in names:
                    self.assertFalse(
                        imported.split(".")[0] == "tensorflow",
                        f"keras_ga.{name} imports {imported}",
                    )
                    parts = imported.split(".")
                    if parts[0] == "keras_ga" and len(parts) == 2:
                        if (PACKAGE / f"{parts[1]}.py").exists():
                            todo.append(parts[1])
        self.assertContainsSubset(
            {"numpy_episodes", "stateless_random", "class_major", "_sine"},
            seen,
        )


if __name__ == "__main__":
    absltest.main()
