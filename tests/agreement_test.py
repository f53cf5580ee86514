"""Tests of the task weightings (paper Eq. 13)."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import agreement


def eq13_numpy(g):
    """The paper's Eq. 13 as written: the N x N double sum."""
    n = g.shape[0]
    scores = np.array([sum(g[i] @ g[j] for j in range(n)) for i in range(n)])
    return scores / np.sum(np.abs(scores))


class AgreementWeightingTest(parameterized.TestCase):
    @parameterized.parameters(1, 2, 5, 32)
    def test_matches_double_sum(self, n):
        rng = np.random.default_rng(n)
        g = rng.normal(size=(n, 50)) + rng.normal(size=(1, 50))
        w = agreement.AgreementWeighting()(tf.constant(g))
        np.testing.assert_allclose(w.numpy(), eq13_numpy(g), rtol=1e-10)
        self.assertAlmostEqual(float(np.sum(np.abs(w))), 1.0, places=10)

    @parameterized.parameters(0, 1, 2)
    def test_mixed_sign_scores_match_double_sum(self, seed):
        # Tasks that oppose the meta-batch's mean direction have negative
        # scores sum_j <g_i, g_j>, so the denominator's absolute value
        # (sum_k |score_k|, not |sum_k score_k|) decides every weight.
        rng = np.random.default_rng(seed)
        common = rng.normal(size=30)
        g = np.stack(
            [common + 0.3 * rng.normal(size=30) for _ in range(4)]
            + [-1.5 * common + 0.3 * rng.normal(size=30) for _ in range(2)]
        )
        scores = g @ g.sum(axis=0)
        self.assertTrue(np.any(scores < 0) and np.any(scores > 0))
        w = agreement.AgreementWeighting()(tf.constant(g)).numpy()
        np.testing.assert_allclose(w, eq13_numpy(g), rtol=1e-10)
        np.testing.assert_allclose(
            w, scores / np.sum(np.abs(scores)), rtol=1e-10
        )
        self.assertAlmostEqual(float(np.sum(np.abs(w))), 1.0, places=10)

    def test_list_of_variables_equals_flat(self):
        rng = np.random.default_rng(0)
        parts = [rng.normal(size=(6, 3, 4)), rng.normal(size=(6, 5))]
        flat = np.concatenate([p.reshape(6, -1) for p in parts], axis=1)
        weigh = agreement.AgreementWeighting()
        w_list = weigh([tf.constant(p) for p in parts]).numpy()
        np.testing.assert_allclose(w_list, eq13_numpy(flat), rtol=1e-10)

    def test_identical_tasks_get_uniform_weights(self):
        g = np.tile(np.arange(1.0, 8.0), (4, 1))
        w = agreement.AgreementWeighting()(tf.constant(g)).numpy()
        np.testing.assert_allclose(w, np.full(4, 0.25), rtol=1e-12)

    def test_opposing_task_gets_negative_weight(self):
        rng = np.random.default_rng(1)
        common = rng.normal(size=20)
        g = np.stack([common + 0.1 * rng.normal(size=20) for _ in range(4)])
        g = np.concatenate([g, -2.0 * common[None]], axis=0)
        w = agreement.AgreementWeighting()(tf.constant(g)).numpy()
        self.assertLess(w[-1], 0.0)
        self.assertTrue(np.all(w[:-1] > 0))

    def test_zero_denominator_falls_back_to_uniform(self):
        weigh = agreement.AgreementWeighting()
        np.testing.assert_allclose(weigh(tf.zeros([5, 3])).numpy(), 0.2)
        # Updates that cancel exactly: sum_j g_j = 0, so every score is 0.
        g = tf.constant([[1.0, 2.0], [-1.0, -2.0]])
        w = weigh(g).numpy()
        np.testing.assert_allclose(w, [0.5, 0.5])
        self.assertTrue(np.all(np.isfinite(w)))

    def test_all_reduce_gives_the_global_meta_batch_weights(self):
        # Two replicas holding the same 3 tasks: the global meta-batch is
        # those tasks twice, so each replica's weights are the 6-task ones.
        rng = np.random.default_rng(2)
        local = [
            tf.constant(rng.normal(size=(3, 4, 2))),
            tf.constant(rng.normal(size=(3, 5))),
        ]
        calls = []

        def two_replicas(values):
            calls.append(values)
            return tf.nest.map_structure(lambda t: 2 * t, values)

        weights = agreement.AgreementWeighting()(local, all_reduce=two_replicas)
        both = [tf.concat([g, g], axis=0) for g in local]
        expected = agreement.AgreementWeighting()(both)[:3]
        np.testing.assert_allclose(weights, expected, rtol=1e-12)
        # sum_j g_j of every variable in one call, the normaliser and the
        # task count in another.
        self.assertLen(calls, 2)

    def test_weights_are_constants_of_the_gradient(self):
        g = tf.Variable([[1.0, 2.0], [3.0, -1.0]])
        with tf.GradientTape() as tape:
            w = agreement.AgreementWeighting()(g)
            total = tf.reduce_sum(w * tf.constant([1.0, 2.0]))
        self.assertIsNone(tape.gradient(total, g))


class UniformWeightingTest(absltest.TestCase):
    def test_uniform(self):
        w = agreement.UniformWeighting()(tf.ones([4, 3])).numpy()
        np.testing.assert_allclose(w, 0.25)


class GetTest(parameterized.TestCase):
    @parameterized.parameters("agreement", "uniform")
    def test_names_and_config_round_trip(self, name):
        weigh = agreement.get(name)
        config = keras.saving.serialize_keras_object(weigh)
        again = agreement.get(config)
        self.assertIsInstance(again, type(weigh))
        self.assertEqual(again.get_config(), weigh.get_config())

    def test_unknown_name(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`weighting` must be one of .*Received: weighting='mean'",
        ):
            agreement.get("mean")

    def test_not_a_weighting(self):
        with self.assertRaisesRegex(
            TypeError, r"Received: weighting=3 of type int"
        ):
            agreement.get(3)

    def test_empty_updates(self):
        with self.assertRaisesRegex(ValueError, "at least one tensor"):
            agreement.AgreementWeighting()([])

    def test_mismatched_task_counts(self):
        with self.assertRaisesRegex(ValueError, "same number of tasks"):
            agreement.AgreementWeighting()([tf.ones([3, 2]), tf.ones([4, 2])])

    def test_scalar_update(self):
        with self.assertRaisesRegex(ValueError, "leading task axis"):
            agreement.AgreementWeighting()(tf.constant(1.0))


if __name__ == "__main__":
    absltest.main()
