"""Tests for keras_ga.datasets.sine."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import episode
from keras_ga.datasets import sine


def _batches(dataset):
    return list(dataset.as_numpy_iterator())


class SineTasksTest(parameterized.TestCase):
    @parameterized.parameters((5, 10, 4), (10, 100, 2), (1, 1, 1))
    def test_shapes_and_dtypes(self, shots, queries, batch):
        dataset = sine.sine_tasks(
            shots=shots, queries=queries, meta_batch_size=batch, seed=0
        )
        spec = dataset.element_spec
        for key, size in (("support", shots), ("query", queries)):
            for suffix in ("_x", "_y"):
                self.assertEqual(spec[key + suffix].shape, (batch, size, 1))
                self.assertEqual(spec[key + suffix].dtype, tf.float32)
        episode.check_episode_shapes(next(iter(dataset)))

    def test_targets_are_the_task_sine(self):
        dataset = sine.sine_tasks(
            shots=10,
            queries=20,
            meta_batch_size=5,
            seed=3,
            num_tasks=20,
            return_params=True,
        )
        for batch, params in _batches(dataset):
            a = params["amplitude"][:, None, None]
            p = params["phase"][:, None, None]
            for part in ("support", "query"):
                x, y = batch[f"{part}_x"], batch[f"{part}_y"]
                np.testing.assert_allclose(y, a * np.sin(x - p), atol=1e-5)
                self.assertTrue(np.all((x >= -5.0) & (x <= 5.0)))

    def test_parameter_ranges(self):
        amplitude, phase = sine.sine_task_params(2000, seed=0)
        self.assertEqual(amplitude.shape, (2000,))
        self.assertBetween(amplitude.min(), 0.1, 0.2)
        self.assertBetween(amplitude.max(), 4.9, 5.0)
        self.assertBetween(phase.min(), 0.0, 0.05)
        self.assertBetween(phase.max(), 2 * np.pi - 0.05, 2 * np.pi)
        _, maml_phase = sine.sine_task_params(
            2000, seed=0, phase_range=(0.0, np.pi)
        )
        self.assertBetween(maml_phase.max(), np.pi - 0.05, np.pi)

    def test_custom_x_range(self):
        dataset = sine.sine_tasks(
            shots=50, queries=50, meta_batch_size=4, seed=0, x_range=(1, 2)
        )
        x = next(iter(dataset))["query_x"].numpy()
        self.assertTrue(np.all((x >= 1.0) & (x <= 2.0)))

    def test_params_match_dataset_whatever_the_batching(self):
        amplitude, phase = sine.sine_task_params(12, seed=9)
        for batch_size in (3, 4):
            dataset = sine.sine_tasks(
                shots=2,
                queries=2,
                meta_batch_size=batch_size,
                seed=9,
                num_tasks=12,
                return_params=True,
            )
            got = [params for _, params in _batches(dataset)]
            np.testing.assert_array_equal(
                np.concatenate([p["amplitude"] for p in got]), amplitude
            )
            np.testing.assert_array_equal(
                np.concatenate([p["phase"] for p in got]), phase
            )

    def test_fixed_tasks_repeat_with_seed(self):
        def tasks(seed):
            return _batches(
                sine.sine_tasks(
                    shots=5,
                    queries=5,
                    meta_batch_size=4,
                    seed=seed,
                    num_tasks=8,
                )
            )

        a, b, c = tasks(1), tasks(1), tasks(2)
        self.assertLen(a, 2)
        for x, y in zip(a, b, strict=True):
            for key in episode.EPISODE_KEYS:
                np.testing.assert_array_equal(x[key], y[key])
        self.assertFalse(np.array_equal(a[0]["support_y"], c[0]["support_y"]))

    def test_endless_stream_starts_with_the_fixed_tasks(self):
        kwargs = dict(shots=5, queries=5, meta_batch_size=4, seed=1)
        fixed = _batches(sine.sine_tasks(num_tasks=8, **kwargs))
        endless = _batches(sine.sine_tasks(**kwargs).take(2))
        for x, y in zip(fixed, endless, strict=True):
            np.testing.assert_array_equal(x["query_x"], y["query_x"])
        more = _batches(sine.sine_tasks(**kwargs).take(50))
        self.assertLen(more, 50)

    @parameterized.parameters(
        ("amplitude_range", (5.0, 0.1)),
        ("phase_range", (1.0,)),
        ("x_range", "ab"),
    )
    def test_bad_range(self, name, value):
        with self.assertRaisesRegex(
            ValueError,
            rf"`{name}` must be a pair \(low, high\) of numbers with "
            rf"low <= high\. Received: {name}=",
        ):
            sine.sine_tasks(
                shots=1, queries=1, meta_batch_size=1, seed=0, **{name: value}
            )

    @parameterized.parameters("shots", "queries", "meta_batch_size")
    def test_non_positive_sizes(self, name):
        kwargs = dict(shots=1, queries=1, meta_batch_size=1, seed=0)
        kwargs[name] = 0
        with self.assertRaisesRegex(
            ValueError, rf"`{name}` must be a positive int. Received: {name}=0"
        ):
            sine.sine_tasks(**kwargs)

    def test_num_tasks_not_multiple_of_meta_batch_size(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`num_tasks` must be a multiple of `meta_batch_size`.*"
            r"Received: num_tasks=5, meta_batch_size=2",
        ):
            sine.sine_tasks(
                shots=1, queries=1, meta_batch_size=2, seed=0, num_tasks=5
            )

    def test_seed_must_be_int(self):
        with self.assertRaisesRegex(
            TypeError, r"`seed` must be an int\. Received: seed=None"
        ):
            sine.sine_task_params(3, seed=None)


if __name__ == "__main__":
    absltest.main()
