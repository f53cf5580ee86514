"""Tests for keras_ga.sampler."""

import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized
from PIL import Image

from keras_ga import episode
from keras_ga import sampler

NUM_CLASSES = 12
PER_CLASS = 7


def _id_images(num_classes=NUM_CLASSES, per_class=PER_CLASS):
    """Class-major float images whose pixels hold `1 + class * M + example`."""
    ids = 1 + np.arange(num_classes * per_class, dtype=np.float32)
    return np.tile(ids.reshape(num_classes, per_class, 1, 1), (1, 1, 2, 3))


def _decode(images, per_class=PER_CLASS):
    """`(class, example)` arrays of id images `[..., 2, 3]`."""
    ids = images[..., 0, 0].astype(np.int64) - 1
    return ids // per_class, ids % per_class


def _tasks(dataset):
    """The tasks of a finite episode dataset, as a list of numpy dicts."""
    tasks = []
    for batch in dataset.as_numpy_iterator():
        size = batch["support_x"].shape[0]
        tasks += [{k: v[i] for k, v in batch.items()} for i in range(size)]
    return tasks


def _episodes(data=None, labels=None, **kwargs):
    config = dict(ways=3, shots=2, queries=3, meta_batch_size=4, seed=0)
    config.update(kwargs)
    return sampler.few_shot_episodes(
        _id_images() if data is None else data, labels, **config
    )


class FewShotEpisodesTest(parameterized.TestCase):
    @parameterized.parameters((5, 1, 1, 2), (3, 2, 3, 4), (12, 3, 4, 1))
    def test_static_shapes_and_dtypes(self, ways, shots, queries, batch):
        dataset = _episodes(
            ways=ways, shots=shots, queries=queries, meta_batch_size=batch
        )
        spec = dataset.element_spec
        self.assertEqual(spec["support_x"].shape, (batch, ways * shots, 2, 3))
        self.assertEqual(spec["support_y"].shape, (batch, ways * shots))
        self.assertEqual(spec["query_x"].shape, (batch, ways * queries, 2, 3))
        self.assertEqual(spec["query_y"].shape, (batch, ways * queries))
        self.assertEqual(spec["support_x"].dtype, tf.float32)
        self.assertEqual(spec["query_y"].dtype, tf.int32)
        episode.check_episode_shapes(next(iter(dataset)))

    @parameterized.parameters((5, 1, 1), (3, 2, 5), (12, 3, 4))
    def test_tasks_are_valid_few_shot_tasks(self, ways, shots, queries):
        dataset = _episodes(
            ways=ways, shots=shots, queries=queries, num_tasks=20
        )
        for task in _tasks(dataset):
            s_class, s_example = _decode(task["support_x"])
            q_class, q_example = _decode(task["query_x"])
            support = set(zip(s_class, s_example, strict=True))
            query = set(zip(q_class, q_example, strict=True))
            self.assertLen(support, ways * shots)
            self.assertLen(query, ways * queries)
            self.assertEmpty(support & query)
            np.testing.assert_array_equal(
                np.bincount(task["support_y"], minlength=ways), [shots] * ways
            )
            np.testing.assert_array_equal(
                np.bincount(task["query_y"], minlength=ways), [queries] * ways
            )
            # Each label is one original class, the same in support and query.
            label_class = {}
            for labels, classes in (
                (task["support_y"], s_class),
                (task["query_y"], q_class),
            ):
                for label, cls in zip(labels, classes, strict=True):
                    self.assertEqual(label_class.setdefault(label, cls), cls)
            self.assertLen(set(label_class.values()), ways)

    def test_class_groups_keep_each_task_within_one_group(self):
        groups = np.arange(NUM_CLASSES) % 3  # 3 groups of 4 (or more)
        # Group 2 of classes 2, 5, 8, 11 made too small for 4 ways.
        groups[[5, 8, 11]] = 1
        seen = set()
        for task in _tasks(
            _episodes(
                ways=4, shots=1, queries=1, num_tasks=40, class_groups=groups
            )
        ):
            classes, _ = _decode(task["support_x"])
            self.assertLen(set(groups[classes]), 1)
            seen.add(int(groups[classes[0]]))
        # Only the groups with >= 4 classes, and both of them.
        self.assertEqual(seen, {0, 1})

    def test_one_group_for_all_classes_is_the_ungrouped_stream(self):
        grouped = _tasks(
            _episodes(num_tasks=8, class_groups=np.zeros(NUM_CLASSES, int))
        )
        for a, b in zip(_tasks(_episodes(num_tasks=8)), grouped, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])

    def test_bad_class_groups(self):
        with self.assertRaisesRegex(ValueError, "`class_groups` must hold one"):
            _episodes(class_groups=np.zeros(NUM_CLASSES - 1, int))
        with self.assertRaisesRegex(ValueError, "`class_groups` must hold one"):
            _episodes(class_groups=np.zeros(NUM_CLASSES))
        with self.assertRaisesRegex(
            ValueError, "at least `ways` classes.*ways=3.*at most 2"
        ):
            _episodes(ways=3, class_groups=np.arange(NUM_CLASSES) // 2)

    def test_relabelling_order_is_random(self):
        orders = set()
        for task in _tasks(_episodes(num_tasks=40, shuffle_examples=False)):
            classes, _ = _decode(task["support_x"][::2])
            orders.add(tuple(np.argsort(classes)))
        self.assertGreater(len(orders), 3)

    def test_unshuffled_examples_are_grouped_by_class(self):
        task = _tasks(_episodes(num_tasks=4, shuffle_examples=False))[0]
        np.testing.assert_array_equal(task["support_y"], [0, 0, 1, 1, 2, 2])
        np.testing.assert_array_equal(task["query_y"], np.repeat([0, 1, 2], 3))

    def test_shuffled_examples_are_not_grouped(self):
        labels = [t["query_y"] for t in _tasks(_episodes(num_tasks=8))]
        sorted_ = [np.all(np.diff(y) >= 0) for y in labels]
        self.assertFalse(all(sorted_))

    def test_fixed_tasks_repeat_with_a_seed_and_change_with_another(self):
        first = _tasks(_episodes(seed=7, num_tasks=8))
        again = _tasks(_episodes(seed=7, num_tasks=8))
        other = _tasks(_episodes(seed=8, num_tasks=8))
        self.assertLen(first, 8)
        for a, b in zip(first, again, strict=True):
            for key in episode.EPISODE_KEYS:
                np.testing.assert_array_equal(a[key], b[key])
        self.assertFalse(
            all(
                np.array_equal(a["support_x"], b["support_x"])
                for a, b in zip(first, other, strict=True)
            )
        )

    def test_task_depends_on_index_not_on_batching(self):
        fixed = _tasks(_episodes(num_tasks=8, meta_batch_size=2))
        endless = _tasks(_episodes(meta_batch_size=4).take(2))
        for a, b in zip(fixed, endless, strict=True):
            np.testing.assert_array_equal(a["query_x"], b["query_x"])

    def test_endless_stream_is_repeatable(self):
        a = _tasks(_episodes(seed=3).take(5))
        b = _tasks(_episodes(seed=3).take(5))
        self.assertLen(a, 20)
        np.testing.assert_array_equal(
            [t["support_x"] for t in a], [t["support_x"] for t in b]
        )

    def test_finite_dataset_has_num_tasks(self):
        dataset = _episodes(num_tasks=12, meta_batch_size=4)
        self.assertEqual(dataset.cardinality().numpy(), 3)

    @parameterized.parameters(
        dict(),
        dict(shuffle_examples=False),
        dict(transform=lambda task, seed: task),
    )
    def test_endless_stream_says_it_is_endless(self, **kwargs):
        # What MetaModel.fit/evaluate (and Keras) read to require
        # steps_per_epoch / validation_steps / steps.
        dataset = _episodes(**kwargs)
        self.assertEqual(
            dataset.cardinality().numpy(), tf.data.INFINITE_CARDINALITY
        )
        finite = _episodes(num_tasks=8, **kwargs)
        self.assertEqual(finite.cardinality().numpy(), 2)

    def test_uint8_scaled_to_unit_interval(self):
        images = np.full((4, 3, 2, 2), 255, np.uint8)
        images[:, :, 0] = 51
        task = next(iter(_episodes(images, ways=2, shots=1, queries=1)))
        self.assertEqual(task["support_x"].dtype, tf.float32)
        np.testing.assert_allclose(task["support_x"][0, 0, 0], [0.2, 0.2])
        np.testing.assert_allclose(task["query_x"][0, 0, 1], [1.0, 1.0])

    def test_bool_and_float64_images(self):
        boolean = np.ones((3, 2, 2), bool)
        task = next(iter(_episodes(boolean, ways=2, shots=1, queries=1)))
        np.testing.assert_array_equal(task["support_x"], np.ones((4, 2, 2)))
        floats = np.full((3, 2, 2), 7.5, np.float64)
        task = next(iter(_episodes(floats, ways=2, shots=1, queries=1)))
        self.assertEqual(task["support_x"].dtype, tf.float32)
        np.testing.assert_array_equal(task["query_x"], np.full((4, 2, 2), 7.5))

    def test_images_and_labels(self):
        images = np.arange(30, dtype=np.float32).reshape(30, 1)
        labels = np.arange(30) % 5 * 10
        dataset = _episodes(images, labels, ways=5, shots=2, queries=4)
        for task in _tasks(dataset.take(2)):
            x = np.concatenate([task["support_x"], task["query_x"]])[:, 0]
            y = np.concatenate([task["support_y"], task["query_y"]])
            for label in range(5):
                self.assertLen(set(x[y == label].astype(int) % 5), 1)

    def test_tf_data_dataset_of_pairs_and_dicts(self):
        images = np.arange(20, dtype=np.float32).reshape(20, 1)
        labels = np.arange(20) % 4
        pairs = tf.data.Dataset.from_tensor_slices((images, labels))
        dicts = tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": labels}
        )
        for data in (pairs, dicts):
            task = next(iter(_episodes(data, ways=4, shots=2, queries=3)))
            x = task["support_x"][0, :, 0].numpy().astype(int)
            y = task["support_y"][0].numpy()
            for label in range(4):
                self.assertLen(set(x[y == label] % 4), 1)

    def test_unequal_class_sizes_never_sample_padding(self):
        labels = np.repeat(np.arange(4), [3, 9, 4, 6])
        images = 1.0 + np.arange(labels.size, dtype=np.float32)
        dataset = _episodes(images, labels, ways=4, shots=1, queries=2)
        for task in _tasks(dataset.take(10)):
            x = np.concatenate([task["support_x"], task["query_x"]])
            self.assertTrue(np.all(x > 0))
            self.assertLen(set(x.tolist()), 12)

    def test_transform_gets_task_and_seed(self):
        def transform(task, seed):
            self.assertEqual(seed.shape, (2,))
            noise = tf.random.stateless_uniform([], seed)
            task["support_x"] = task["support_x"] * 0.0 + noise
            return task

        a = next(iter(_episodes(transform=transform, num_tasks=4)))
        b = next(iter(_episodes(transform=transform, num_tasks=4)))
        x = a["support_x"].numpy()
        np.testing.assert_array_equal(x, b["support_x"])
        self.assertTrue(np.all((x >= 0) & (x < 1)))
        self.assertGreater(len(np.unique(x)), 1)
        self.assertGreaterEqual(a["query_x"].numpy().min(), 1.0)


class GroupByClassTest(parameterized.TestCase):
    def test_groups_in_label_order_keeping_example_order(self):
        images = np.array([10, 20, 11, 30, 21, 12])
        labels = np.array([1, 2, 1, 3, 2, 1])
        grouped = sampler.group_by_class(images, labels)
        np.testing.assert_array_equal(
            grouped.images, [[10, 11, 12], [20, 21, 0], [30, 0, 0]]
        )
        np.testing.assert_array_equal(grouped.counts, [3, 2, 1])
        np.testing.assert_array_equal(grouped.classes, [1, 2, 3])

    def test_materialize(self):
        data = tf.data.Dataset.from_tensor_slices((np.eye(3), [0, 1, 1]))
        images, labels = sampler.materialize(data)
        np.testing.assert_array_equal(images, np.eye(3))
        np.testing.assert_array_equal(labels, [0, 1, 1])


class ErrorsTest(parameterized.TestCase):
    def test_too_many_ways(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`ways` must be at most the number of classes available \(12\)"
            r"\. Received: ways=13",
        ):
            _episodes(ways=13)

    def test_too_many_examples_per_class(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`shots \+ queries` must be at most the number of examples of "
            r"the smallest class \(7\).*Received: shots \+ queries=8",
        ):
            _episodes(shots=3, queries=5)

    def test_smallest_class_is_the_limit(self):
        labels = np.repeat(np.arange(3), [5, 2, 5])
        with self.assertRaisesRegex(ValueError, r"smallest class \(2\)"):
            _episodes(np.zeros((12, 1)), labels, ways=2, shots=1, queries=2)

    @parameterized.parameters(np.float32, np.bool_)
    def test_non_integer_labels(self, dtype):
        with self.assertRaisesRegex(
            TypeError, r"`labels` must be integers.*Received: labels of dtype"
        ):
            sampler.group_by_class(np.zeros((3, 1)), np.zeros(3, dtype))

    def test_labels_shape(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`labels` must be a non-empty one-dimensional array\. "
            r"Received: labels.shape=\(3, 1\)",
        ):
            sampler.group_by_class(np.zeros((3, 1)), np.zeros((3, 1), int))

    def test_length_mismatch(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`images` and `labels` must have the same number of examples.*"
            r"Received: images.shape=\(4, 1\), labels.shape=\(3,\)",
        ):
            sampler.group_by_class(np.zeros((4, 1)), np.zeros(3, int))

    @parameterized.parameters("ways", "shots", "queries", "meta_batch_size")
    def test_non_positive_sizes(self, name):
        with self.assertRaisesRegex(
            ValueError, rf"`{name}` must be a positive int. Received: {name}=0"
        ):
            _episodes(**{name: 0})

    @parameterized.parameters("ways", "seed", "num_tasks")
    def test_non_int_sizes(self, name):
        with self.assertRaisesRegex(
            TypeError,
            rf"`{name}` must be an int. Received: {name}=2.0 of type float",
        ):
            _episodes(**{name: 2.0})

    def test_num_tasks_not_multiple_of_meta_batch_size(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`num_tasks` must be a multiple of `meta_batch_size`.*"
            r"Received: num_tasks=10, meta_batch_size=4",
        ):
            _episodes(num_tasks=10)

    def test_unsupported_image_dtype(self):
        with self.assertRaisesRegex(
            TypeError,
            r"`data` images must be uint8, uint16, bool or floating point\. "
            r"Received: images of dtype int32",
        ):
            _episodes(np.zeros((4, 6, 2), np.int32))

    @parameterized.parameters(
        ((800, 28, 28, 1), r"800 classes of 28 examples of shape \(28, 1\)"),
        ((60, 32, 32, 3), r"60 classes of 32 examples of shape \(32, 3\)"),
        ((800, 28, 28), r"800 classes of 28 examples of shape \(28,\)"),
        ((50, 784), r"50 classes of 784 examples of shape \(\)"),
    )
    def test_flat_examples_without_labels(self, shape, reading):
        with self.assertRaisesRegex(
            ValueError,
            rf"Without `labels`.*{reading}.*looks like a stack of examples.*"
            r"Pass their class ids as `labels`.*ClassMajor\.from_array.*"
            rf"Received: data.shape={re.escape(str(shape))}, labels=None",
        ):
            _episodes(np.zeros(shape, np.float32))

    def test_class_major_arrays_of_such_shapes_are_accepted(self):
        # The same shape, said to be class-major, and the loaders' 5-D
        # class-major images.
        stated = sampler.ClassMajor.from_array(np.zeros((20, 28, 28, 1)))
        self.assertEqual(stated.images.shape, (20, 28, 28, 1))
        np.testing.assert_array_equal(stated.counts, [28] * 20)
        np.testing.assert_array_equal(stated.classes, np.arange(20))
        batch = next(iter(_episodes(stated)))
        self.assertEqual(batch["support_x"].shape, (4, 6, 28, 1))
        images = np.zeros((10, 20, 28, 28, 1), np.float32)
        batch = next(iter(_episodes(images)))
        self.assertEqual(batch["support_x"].shape, (4, 6, 28, 28, 1))

    def test_repeated_dataset(self):
        data = tf.data.Dataset.from_tensor_slices((np.eye(3), [0, 1, 1]))
        with self.assertRaisesRegex(
            ValueError,
            r"`data` must be a finite tf\.data\.Dataset.*read forever.*"
            r"Remove the `\.repeat\(\)`.*Received: a dataset of infinite "
            r"cardinality",
        ):
            _episodes(data.repeat())
        with self.assertRaisesRegex(ValueError, r"`dataset` must be a finite"):
            sampler.materialize(data.repeat())

    def test_batched_dataset(self):
        data = tf.data.Dataset.from_tensor_slices((np.eye(6), np.arange(6)))
        with self.assertRaisesRegex(
            ValueError,
            r"`data` must hold one example per element.*"
            r"`dataset\.unbatch\(\)`.*Received: labels of shape \[None\]",
        ):
            _episodes(data.batch(4))

    def test_image_dataset_from_directory_defaults(self):
        with tempfile.TemporaryDirectory() as root:
            for name in ("a", "b", "c"):
                (Path(root) / name).mkdir()
                for i in range(4):
                    Image.new("L", (8, 8), 60 * i).save(
                        Path(root) / name / f"{i}.png"
                    )
            kwargs = dict(image_size=(8, 8), color_mode="grayscale")
            batched = keras.utils.image_dataset_from_directory(root, **kwargs)
            with self.assertRaisesRegex(
                ValueError, r"unbatch.*Received: labels of shape \[None\]"
            ):
                _episodes(batched, ways=2, shots=1, queries=1)
            one_hot = keras.utils.image_dataset_from_directory(
                root, label_mode="categorical", batch_size=None, **kwargs
            )
            with self.assertRaisesRegex(
                ValueError,
                r"one-hot labels need converting to class ids.*"
                r"Received: labels of shape \[3\]",
            ):
                _episodes(one_hot, ways=2, shots=1, queries=1)
            unbatched = batched.unbatch()
            batch = next(iter(_episodes(unbatched, ways=2, shots=1, queries=3)))
            self.assertEqual(batch["support_x"].shape, (4, 2, 8, 8, 1))

    def test_class_major_needs_two_axes(self):
        with self.assertRaisesRegex(
            ValueError,
            r"Without `labels`, `data` must be class-major.*"
            r"Received: data.shape=\(5,\)",
        ):
            _episodes(np.zeros(5))

    def test_labels_with_dataset(self):
        data = tf.data.Dataset.from_tensor_slices((np.eye(3), [0, 1, 1]))
        with self.assertRaisesRegex(
            ValueError,
            r"`labels` must be None when `data` is a tf.data.Dataset.*"
            r"Received: labels of type list",
        ):
            _episodes(data, [0, 1, 1])

    def test_dataset_of_single_tensors(self):
        data = tf.data.Dataset.from_tensor_slices(np.eye(3))
        with self.assertRaisesRegex(
            ValueError,
            r"`dataset` elements must be `\(image, label\)` pairs.*"
            r"Received: an element of type ndarray",
        ):
            sampler.materialize(data)

    def test_empty_dataset(self):
        data = tf.data.Dataset.from_tensor_slices(
            (np.zeros((0, 2)), np.zeros(0, int))
        )
        with self.assertRaisesRegex(
            ValueError, r"`dataset` must not be empty. Received: 0 elements"
        ):
            sampler.materialize(data)


class TaskIndicesTest(parameterized.TestCase):
    def _take(self, dataset, n):
        return [int(i) for i in dataset.take(n)]

    def test_fixed_set_and_endless_stream(self):
        fixed = sampler.task_indices(meta_batch_size=2, num_tasks=6)
        self.assertEqual([int(i) for i in fixed], [0, 1, 2, 3, 4, 5])
        endless = sampler.task_indices(meta_batch_size=4)
        self.assertEqual(self._take(endless, 3), [0, 1, 2])
        self.assertEqual(endless.element_spec.dtype, tf.int64)

    def test_int_start_skips_whole_meta_batches(self):
        indices = sampler.task_indices(meta_batch_size=4, start=3)
        self.assertEqual(self._take(indices, 5), [12, 13, 14, 15, 16])

    def test_variable_start_is_read_when_iteration_begins(self):
        start = tf.Variable(0, dtype=tf.int64)
        indices = sampler.task_indices(meta_batch_size=3, start=start)
        self.assertEqual(self._take(indices, 2), [0, 1])
        start.assign(5)
        self.assertEqual(self._take(indices, 2), [15, 16])
        self.assertEqual(indices.element_spec.dtype, tf.int64)

    def test_negative_variable_start_fails_when_read(self):
        start = tf.Variable(-1, dtype=tf.int32)
        indices = sampler.task_indices(meta_batch_size=3, start=start)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"`start` must be >= 0"
        ):
            next(iter(indices))

    def test_episodes_from_a_start_continue_the_stream_from_zero(self):
        start = tf.Variable(2, dtype=tf.int64)
        resumed = _tasks(_episodes(seed=3, start=start).take(2))
        from_zero = _tasks(_episodes(seed=3).take(4))[8:]
        self.assertLen(resumed, 8)
        for a, b in zip(resumed, from_zero, strict=True):
            for key in episode.EPISODE_KEYS:
                np.testing.assert_array_equal(a[key], b[key])

    @parameterized.parameters(2.0, "1", None, True)
    def test_start_of_another_type(self, start):
        with self.assertRaisesRegex(
            TypeError,
            r"`start` must be an int or an integer scalar `tf.Variable` "
            r"\(such as `EpisodeStreamStart.step`\)\. Received: start=",
        ):
            _episodes(start=start)

    @parameterized.parameters((0.0, "float32"), ([0, 1], "int64"))
    def test_variable_start_must_be_an_integer_scalar(self, value, dtype):
        start = tf.Variable(value, dtype=dtype)
        with self.assertRaisesRegex(
            TypeError,
            r"`start` must be an integer scalar `tf.Variable`\. Received: ",
        ):
            sampler.task_indices(meta_batch_size=2, start=start)

    def test_negative_start(self):
        with self.assertRaisesRegex(
            ValueError, r"`start` must be >= 0\. Received: start=-2\."
        ):
            _episodes(start=-2)

    @parameterized.parameters(True, False)
    def test_start_needs_an_endless_stream(self, variable):
        start = tf.Variable(0, dtype=tf.int64) if variable else 3
        with self.assertRaisesRegex(
            ValueError,
            r"`start` applies to endless streams: a fixed set of tasks "
            r"\(`num_tasks`\) always starts at task 0\. Received: start=.*"
            r"num_tasks=8",
        ):
            _episodes(num_tasks=8, start=start)


class CorruptionTest(parameterized.TestCase):
    def test_uncorrupted_stream_is_the_one_before_corruption_existed(self):
        # Example ids (class * 7 + example) and labels of tasks 0 and 1 of
        # `_episodes(num_tasks=4)`, from keras_ga before `corrupt_fraction`.
        expected = [
            (
                [38, 36, 17, 19, 26, 27],
                [1, 1, 2, 2, 0, 0],
                [22, 18, 20, 21, 25, 41, 16, 39, 37],
                [0, 2, 2, 0, 0, 1, 2, 1, 1],
            ),
            (
                [74, 36, 42, 47, 35, 73],
                [0, 2, 1, 1, 2, 0],
                [39, 71, 45, 72, 44, 38, 43, 41, 75],
                [2, 0, 1, 0, 1, 2, 1, 2, 0],
            ),
        ]
        for fraction in (None, 0.0):
            extra = {} if fraction is None else {"corrupt_fraction": fraction}
            tasks = _tasks(_episodes(num_tasks=4, **extra))
            for task, (s_ids, s_y, q_ids, q_y) in zip(tasks, expected):
                s_class, s_example = _decode(task["support_x"])
                q_class, q_example = _decode(task["query_x"])
                np.testing.assert_array_equal(
                    s_class * PER_CLASS + s_example, s_ids
                )
                np.testing.assert_array_equal(task["support_y"], s_y)
                np.testing.assert_array_equal(
                    q_class * PER_CLASS + q_example, q_ids
                )
                np.testing.assert_array_equal(task["query_y"], q_y)

    def test_corrupted_tasks_are_reproducible_and_the_stated_fraction(self):
        mask = sampler.corrupted_tasks(seed=3, num_tasks=20000, fraction=0.2)
        self.assertEqual(mask.dtype, bool)
        self.assertEqual(mask.shape, (20000,))
        # Within 4 standard deviations (0.0028) of 0.2.
        self.assertAlmostEqual(mask.mean(), 0.2, delta=0.012)
        np.testing.assert_array_equal(
            mask, sampler.corrupted_tasks(3, 20000, 0.2)
        )
        other = sampler.corrupted_tasks(4, 20000, 0.2)
        self.assertLess(np.mean(mask == other), 0.75)
        fewer = sampler.corrupted_tasks(3, 20000, 0.1)
        self.assertFalse(np.any(fewer & ~mask))  # nested
        self.assertFalse(sampler.corrupted_tasks(3, 100, 0.0).any())
        self.assertTrue(sampler.corrupted_tasks(3, 100, 1.0).all())

    @parameterized.parameters("shuffle", "permute")
    def test_only_the_named_tasks_change_and_only_their_labels(self, kind):
        clean = _tasks(_episodes(num_tasks=40))
        tasks = _tasks(
            _episodes(num_tasks=40, corrupt_fraction=0.5, corruption=kind)
        )
        mask = sampler.corrupted_tasks(0, 40, 0.5)
        self.assertTrue(0 < mask.sum() < 40)
        for task, reference, corrupted in zip(tasks, clean, mask):
            for key in ("support_x", "query_x"):
                np.testing.assert_array_equal(task[key], reference[key])
            same = all(
                np.array_equal(task[k], reference[k])
                for k in ("support_y", "query_y")
            )
            if not corrupted:
                self.assertTrue(same)
            elif kind == "permute":
                self.assertFalse(same)

    def test_permute_shifts_the_query_labels_to_the_next_class(self):
        clean = _tasks(_episodes(num_tasks=8))
        tasks = _tasks(
            _episodes(num_tasks=8, corrupt_fraction=1.0, corruption="permute")
        )
        for task, reference in zip(tasks, clean):
            np.testing.assert_array_equal(
                task["support_y"], reference["support_y"]
            )
            np.testing.assert_array_equal(
                task["query_y"], (reference["query_y"] + 1) % 3
            )

    def test_shuffle_permutes_labels_among_the_examples(self):
        clean = _tasks(_episodes(num_tasks=64))
        tasks = _tasks(
            _episodes(num_tasks=64, corrupt_fraction=1.0, corruption="shuffle")
        )
        kept = []
        for task, reference in zip(tasks, clean):
            for key in ("support_y", "query_y"):
                np.testing.assert_array_equal(
                    np.sort(task[key]), np.sort(reference[key])
                )
                kept.append(np.mean(task[key] == reference[key]))
        # A random label matches the true one a third of the time (3-way).
        self.assertAlmostEqual(np.mean(kept), 1 / 3, delta=0.08)

    def test_endless_stream_corrupts_the_same_task_indices(self):
        mask = sampler.corrupted_tasks(0, 16, 0.5)
        kwargs = dict(corrupt_fraction=0.5, corruption="permute")
        stream = _tasks(_episodes(start=2, **kwargs).take(2))  # tasks 8..15
        clean = _tasks(_episodes(start=2).take(2))
        changed = [
            not np.array_equal(t["query_y"], c["query_y"])
            for t, c in zip(stream, clean)
        ]
        np.testing.assert_array_equal(changed, mask[8:])

    @parameterized.parameters(-0.1, 1.5, float("nan"), True, "0.2")
    def test_bad_fraction(self, fraction):
        with self.assertRaisesRegex(
            ValueError,
            r"`corrupt_fraction` must be a number in \[0, 1\]\. "
            r"Received: corrupt_fraction=",
        ):
            _episodes(corrupt_fraction=fraction)
        with self.assertRaisesRegex(ValueError, "corrupt_fraction"):
            sampler.corrupted_tasks(0, 10, fraction)

    def test_unknown_corruption(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`corruption` must be one of \('shuffle', 'permute'\)\. "
            r"Received: corruption='noise'\.",
        ):
            _episodes(corrupt_fraction=0.1, corruption="noise")

    def test_corrupted_tasks_checks_its_counts(self):
        with self.assertRaisesRegex(ValueError, "`num_tasks` must be"):
            sampler.corrupted_tasks(0, 0, 0.5)
        with self.assertRaisesRegex(TypeError, "`seed` must be an int"):
            sampler.corrupted_tasks(0.5, 10, 0.5)


if __name__ == "__main__":
    absltest.main()
