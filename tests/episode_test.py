"""Tests for keras_ga.episode."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import episode

N, S, Q = 3, 5, 4
X_SHAPE = (6, 6, 1)


def _arrays(n=N, s=S, q=Q, x_shape=X_SHAPE, y_shape=()):
    rng = np.random.default_rng(0)
    return {
        "support_x": rng.normal(size=(n, s, *x_shape)).astype("float32"),
        "support_y": rng.integers(0, 2, size=(n, s, *y_shape)).astype("int32"),
        "query_x": rng.normal(size=(n, q, *x_shape)).astype("float32"),
        "query_y": rng.integers(0, 2, size=(n, q, *y_shape)).astype("int32"),
    }


class AsEpisodeTest(parameterized.TestCase):
    def assertEpisodeEqual(self, got, want):
        self.assertIsInstance(got, dict)
        self.assertEqual(tuple(got), episode.EPISODE_KEYS)
        for key in episode.EPISODE_KEYS:
            self.assertIsInstance(got[key], tf.Tensor)
            np.testing.assert_array_equal(got[key].numpy(), want[key])

    @parameterized.named_parameters(
        ("classification", ()),
        ("regression", (1,)),
    )
    def test_valid_dict(self, y_shape):
        data = _arrays(y_shape=y_shape)
        got = episode.as_episode(data)
        self.assertEpisodeEqual(got, data)
        self.assertEqual(got["support_x"].shape, (N, S, *X_SHAPE))
        self.assertEqual(got["query_y"].shape, (N, Q, *y_shape))
        self.assertEqual(got["support_y"].dtype, tf.int32)

    def test_dict_of_tensors(self):
        data = _arrays()
        got = episode.as_episode({k: tf.constant(v) for k, v in data.items()})
        self.assertEpisodeEqual(got, data)

    @parameterized.named_parameters(("tuple", tuple), ("list", list))
    def test_four_tuple(self, container):
        data = _arrays()
        got = episode.as_episode(
            container(data[k] for k in episode.EPISODE_KEYS)
        )
        self.assertEpisodeEqual(got, data)

    @parameterized.named_parameters(
        ("x", 0),
        ("x_none", 1),
        ("x_none_none", 2),
    )
    def test_keras_packed_dict(self, num_nones):
        # Keras packs a lone `x` as (x,) or (x, None, None).
        data = _arrays()
        packed = (data,) + (None,) * num_nones
        self.assertEpisodeEqual(episode.as_episode(packed), data)

    def test_support_and_query_sizes_may_differ(self):
        got = episode.as_episode(_arrays(s=2, q=7))
        self.assertEqual(got["support_x"].shape[1], 2)
        self.assertEqual(got["query_x"].shape[1], 7)

    @parameterized.named_parameters(
        ("support_x", "support_x"),
        ("support_y", "support_y"),
        ("query_x", "query_x"),
        ("query_y", "query_y"),
    )
    def test_missing_key(self, key):
        data = _arrays()
        del data[key]
        with self.assertRaisesRegex(
            ValueError,
            r"An episode must have exactly the keys .*"
            rf"Missing: \['{key}'\]; unexpected: \[\]",
        ):
            episode.as_episode(data)

    def test_unexpected_key(self):
        data = _arrays()
        data["labels"] = data["query_y"]
        with self.assertRaisesRegex(
            ValueError, r"Missing: \[\]; unexpected: \['labels'\]"
        ):
            episode.as_episode(data)

    def test_dict_with_targets_is_not_an_episode(self):
        data = _arrays()
        with self.assertRaisesRegex(
            ValueError,
            r"An episode must be a dict with keys .* or a 4-tuple in that "
            r"order\. Received: a tuple of length 2\.",
        ):
            episode.as_episode((data, data["query_y"]))

    def test_x_y_tuple_is_not_an_episode(self):
        data = _arrays()
        with self.assertRaisesRegex(
            ValueError,
            r"An episode must be a dict with keys .* or a 4-tuple in that "
            r"order\. Received: a tuple of length 2\.",
        ):
            episode.as_episode((data["support_x"], data["support_y"]))

    @parameterized.named_parameters(
        ("rank_1", "support_y", (N,)),
        ("rank_0", "query_x", ()),
    )
    def test_wrong_rank(self, key, shape):
        data = _arrays()
        data[key] = np.zeros(shape, "float32")
        with self.assertRaisesRegex(
            ValueError,
            rf"`{key}` must have a task axis and an example axis, "
            r"\[N, examples, \.\.\.\]\. "
            rf"Received: {key}\.shape=\({', '.join(map(str, shape))},?\)",
        ):
            episode.as_episode(data)

    @parameterized.named_parameters(
        ("support_y", "support_y"),
        ("query_x", "query_x"),
    )
    def test_mismatched_task_counts(self, key):
        data = _arrays()
        data[key] = data[key][:2]
        with self.assertRaisesRegex(
            ValueError,
            r"All four episode tensors must have the same number of tasks "
            r"\(axis 0\)\. Received: .*'support_x': '\(3, 5, 6, 6, 1\)'",
        ):
            episode.as_episode(data)

    @parameterized.named_parameters(
        ("support", "support_x", "support_y"),
        ("query", "query_x", "query_y"),
    )
    def test_mismatched_example_counts(self, x_key, y_key):
        data = _arrays()
        data[y_key] = data[y_key][:, :2]
        n_x = data[x_key].shape[1]
        with self.assertRaisesRegex(
            ValueError,
            rf"`{x_key}` and `{y_key}` must have the same number of examples "
            r"per task \(axis 1\)\. "
            rf"Received: {x_key}\.shape=\(3, {n_x}, 6, 6, 1\), "
            rf"{y_key}\.shape=\(3, 2\)\.",
        ):
            episode.as_episode(data)

    def test_mismatched_x_shapes(self):
        data = _arrays()
        data["query_x"] = np.zeros((N, Q, 5, 5, 1), "float32")
        with self.assertRaisesRegex(
            ValueError,
            r"`support_x` and `query_x` must have the same per-example shape "
            r"\(axes 2 and up\)\. Received: support_x\.shape=\(3, 5, 6, 6, 1\)"
            r", query_x\.shape=\(3, 4, 5, 5, 1\)\.",
        ):
            episode.as_episode(data)

    def test_mismatched_y_ranks(self):
        data = _arrays()
        data["query_y"] = np.zeros((N, Q, 1), "int32")
        with self.assertRaisesRegex(
            ValueError,
            r"`support_y` and `query_y` must have the same per-example shape "
            r"\(axes 2 and up\)\. Received: support_y\.shape=\(3, 5\), "
            r"query_y\.shape=\(3, 4, 1\)\.",
        ):
            episode.as_episode(data)

    @parameterized.named_parameters(
        ("none", None, "NoneType"),
        ("int", 3, "int"),
        ("string", "episode", "str"),
        ("array", np.zeros((N, S)), "ndarray"),
    )
    def test_wrong_type(self, data, type_name):
        with self.assertRaisesRegex(
            TypeError,
            r"An episode must be a dict with keys \['support_x', 'support_y', "
            rf"'query_x', 'query_y'\]\. Received: data of type {type_name}\.",
        ):
            episode.as_episode(data)


class CheckEpisodeShapesTest(absltest.TestCase):
    def test_unknown_dims_are_accepted(self):
        spec = episode.episode_signature(X_SHAPE, (), tf.int32)

        @tf.function(input_signature=[spec])
        def check(ep):
            episode.check_episode_shapes(ep)
            return ep["support_x"]

        out = check({k: tf.constant(v) for k, v in _arrays().items()})
        self.assertEqual(out.shape, (N, S, *X_SHAPE))

    def test_signature_shapes(self):
        spec = episode.episode_signature(
            (1,), (1,), tf.float32, num_tasks=4, support=10, query=15
        )
        self.assertEqual(spec["support_x"].shape, (4, 10, 1))
        self.assertEqual(spec["query_y"].shape, (4, 15, 1))
        self.assertEqual(spec["query_y"].dtype, tf.float32)
        self.assertEqual(spec["support_x"].dtype, tf.float32)


if __name__ == "__main__":
    absltest.main()
