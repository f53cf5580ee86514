"""Tests for keras_ga.datasets.sine."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import episode
from keras_ga import sampler
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


def _tasks(**kwargs):
    """Tasks 0..39 (seed 5) as `(episode, params)` numpy batches of 40."""
    dataset = sine.sine_tasks(
        shots=10,
        queries=20,
        meta_batch_size=40,
        seed=5,
        num_tasks=40,
        return_params=True,
        **kwargs,
    )
    return next(dataset.as_numpy_iterator())


class SineCorruptionTest(parameterized.TestCase):
    def test_uncorrupted_tasks_are_the_ones_before_corruption_existed(self):
        # Tasks 0 and 1 of seed 0, from keras_ga before `corrupt_fraction`.
        expected = {
            "support_x": [-1.4810097, 3.3075819, 4.7418098, 2.5512195],
            "support_y": [2.0035467, -0.9012484, 0.9222316, 0.8655194],
            "query_x": [1.6475439, 0.0795341, 3.7806406, 3.4977016],
            "query_y": [-1.9895965, 1.0773288, 1.9393415, 1.9263043],
        }
        for extra in ({}, {"corrupt_fraction": 0.0}):
            dataset = sine.sine_tasks(
                shots=2,
                queries=2,
                meta_batch_size=2,
                seed=0,
                num_tasks=2,
                **extra,
            )
            batch = next(dataset.as_numpy_iterator())
            for key, values in expected.items():
                np.testing.assert_allclose(
                    batch[key].ravel(), values, rtol=1e-6
                )

    @parameterized.parameters("noise", "shuffle", "wrong_function")
    def test_only_the_named_tasks_change_and_only_their_targets(self, kind):
        clean, _ = _tasks()
        batch, params = _tasks(corrupt_fraction=0.5, corruption=kind)
        mask = sampler.corrupted_tasks(5, 40, 0.5)
        np.testing.assert_array_equal(params["corrupted"], mask)
        self.assertTrue(0 < mask.sum() < 40)
        for key in ("support_x", "query_x"):
            np.testing.assert_array_equal(batch[key], clean[key])
        for key in ("support_y", "query_y"):
            np.testing.assert_array_equal(batch[key][~mask], clean[key][~mask])
            changed = np.any(batch[key][mask] != clean[key][mask], axis=(1, 2))
            self.assertTrue(np.all(changed))

    def test_noise_has_the_stated_standard_deviation(self):
        clean, _ = _tasks()
        batch, _ = _tasks(corrupt_fraction=1.0, corruption="noise")
        noise = np.concatenate(
            [(batch[k] - clean[k]).ravel() for k in ("support_y", "query_y")]
        )
        self.assertLen(noise, 1200)
        self.assertAlmostEqual(noise.mean(), 0.0, delta=0.15)
        self.assertAlmostEqual(noise.std(), sine.NOISE_STD, delta=0.1)

    def test_shuffle_permutes_the_targets_among_the_points(self):
        clean, _ = _tasks()
        batch, _ = _tasks(corrupt_fraction=1.0, corruption="shuffle")
        for key in ("support_y", "query_y"):
            np.testing.assert_array_equal(
                np.sort(batch[key], axis=1), np.sort(clean[key], axis=1)
            )
            self.assertLess(np.mean(batch[key] == clean[key]), 0.3)

    def test_wrong_function_is_the_sine_plus_the_stated_offset(self):
        clean, params = _tasks()
        batch, _ = _tasks(corrupt_fraction=1.0, corruption="wrong_function")
        a = params["amplitude"][:, None, None]
        p = params["phase"][:, None, None]
        for part in ("support", "query"):
            x, y = batch[f"{part}_x"], batch[f"{part}_y"]
            np.testing.assert_allclose(y, a * np.sin(x - p) + 6.0, atol=1e-5)
        self.assertEqual(sine.WRONG_FUNCTION_OFFSET, 6.0)

    def test_same_corrupted_tasks_as_the_few_shot_sampler(self):
        _, params = _tasks(corrupt_fraction=0.3)
        np.testing.assert_array_equal(
            params["corrupted"], sampler.corrupted_tasks(5, 40, 0.3)
        )
        _, clean = _tasks()
        self.assertFalse(clean["corrupted"].any())

    def test_unknown_corruption(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`corruption` must be one of \('noise', 'shuffle', "
            r"'wrong_function'\)\. Received: corruption='permute'\.",
        ):
            sine.sine_tasks(
                shots=1,
                queries=1,
                meta_batch_size=1,
                seed=0,
                corrupt_fraction=0.1,
                corruption="permute",
            )

    def test_bad_fraction(self):
        with self.assertRaisesRegex(
            ValueError, r"Received: corrupt_fraction=2"
        ):
            sine.sine_tasks(
                shots=1,
                queries=1,
                meta_batch_size=1,
                seed=0,
                corrupt_fraction=2,
            )


if __name__ == "__main__":
    absltest.main()
