"""Tests of the private-API workarounds and their public fallbacks."""

import types

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga import _compat


def fake_strategy(replicas=1, cluster=None, multi_worker=None):
    """A strategy-like object, with or without the private method."""
    extended = types.SimpleNamespace()
    if multi_worker is not None:
        extended._in_multi_worker_mode = lambda: multi_worker
    resolver = types.SimpleNamespace(
        cluster_spec=lambda: tf.train.ClusterSpec(cluster or {})
    )
    return types.SimpleNamespace(
        extended=extended,
        cluster_resolver=resolver,
        num_replicas_in_sync=replicas,
    )


class ReductionAxesTest(parameterized.TestCase):
    @parameterized.parameters((2, -1), (4, -1), (4, 1), (3, 0))
    def test_fallback_matches_keras(self, rank, axis):
        layer = keras.layers.BatchNormalization(axis=axis)
        layer.build((2,) * rank)
        bare = types.SimpleNamespace(axis=axis)  # no `_reduction_axes`
        self.assertEqual(
            _compat.reduction_axes(bare, rank),
            _compat.reduction_axes(layer, rank),
        )
        self.assertNotIn(axis % rank, _compat.reduction_axes(bare, rank))
        self.assertLen(_compat.reduction_axes(bare, rank), rank - 1)


class MultiWorkerTest(parameterized.TestCase):
    @parameterized.parameters(True, False)
    def test_private_method_when_present(self, value):
        strategy = fake_strategy(multi_worker=value)
        self.assertIs(_compat.in_multi_worker_mode(strategy), value)

    @parameterized.parameters(
        ({}, False),
        ({"worker": ["a:1"]}, False),
        ({"worker": ["a:1", "b:2"]}, True),
        ({"chief": ["a:1"], "worker": ["b:2"]}, True),
    )
    def test_fallback_counts_workers(self, cluster, expected):
        strategy = fake_strategy(cluster=cluster)
        self.assertIs(_compat.in_multi_worker_mode(strategy), expected)


class SymbolicBuildTest(absltest.TestCase):
    def test_explicit_strategy_of_a_model_outside_a_scope_is_none(self):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        self.assertIsNone(_compat.explicit_strategy(model))

    def test_explicit_strategy_fallback(self):
        one = types.SimpleNamespace(distribute_strategy=fake_strategy(1))
        two = types.SimpleNamespace(distribute_strategy=fake_strategy(2))
        self.assertIsNone(_compat.explicit_strategy(one))
        self.assertIs(_compat.explicit_strategy(two), two.distribute_strategy)

    def test_first_distributed_batch(self):
        batches = iter([np.ones(2), np.zeros(2)])
        first = _compat.first_distributed_batch(iter([(0, 0, batches)]))
        np.testing.assert_array_equal(first, np.ones(2))
        self.assertIsNone(_compat.first_distributed_batch(iter([])))

    def test_first_distributed_batch_refuses_another_layout(self):
        with self.assertRaisesRegex(
            RuntimeError,
            r"epoch iterator yields \(begin_step, end_step, iterator\).*"
            r"Received: an element of type list",
        ):
            _compat.first_distributed_batch(iter([[1, 2]]))


if __name__ == "__main__":
    absltest.main()
