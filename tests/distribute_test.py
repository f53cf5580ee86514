"""MetaModel under tf.distribute: R replicas give the single-device update.

The module splits the host CPU into 3 logical devices before TensorFlow
initialises, then trains the same float64 model on the same tasks on one
device and under `MirroredStrategy` with 2 and 3 replicas. tf.data splits a
global meta-batch of 7 tasks over 3 replicas as 3 + 3 + 1, in `fit` and in
a custom loop of `strategy.run(train_step)` (which shows every replica's
logs). `MultiWorkerTest` starts two worker processes
(`tests/distribute_worker.py`) on localhost, each running `fit` and
`evaluate`.
"""

import functools
import json
import os
import socket
import tempfile

import tensorflow as tf

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 3
)

import numpy as np  # noqa: E402
from absl.testing import absltest  # noqa: E402
from absl.testing import parameterized  # noqa: E402

from keras_ga import distribute  # noqa: E402
from tests import distribute_worker as worker  # noqa: E402
from tests import support  # noqa: E402

# Replicas sum in another order than one device: float64 round-off only.
RTOL, ATOL = 1e-9, 1e-12


def strategy_of(replicas):
    # Collective all-reduces key their groups per strategy object, and two
    # strategies of different sizes in one process clash: reduce on one
    # device instead (what matters here is the arithmetic, not the speed).
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


STEPS = 2


def train(strategy, algo, weighting, tasks, steps=STEPS, batch_norm=False):
    """Final weights and history of `fit` under `strategy`."""
    with strategy.scope():
        model = worker.build(algo, weighting, batch_norm=batch_norm)
    history = model.fit(
        worker.dataset(tasks, steps), epochs=1, verbose=0
    ).history
    return model.base.get_weights(), history


@functools.lru_cache
def train_single(algo, weighting, tasks, steps=STEPS, batch_norm=False):
    """`train` on one device, computed once per argument set."""
    return train(
        tf.distribute.get_strategy(), algo, weighting, tasks, steps, batch_norm
    )


def train_custom_loop(strategy, algo, tasks, steps=STEPS, batch_norm=False):
    """Final weights and every replica's last logs, by `strategy.run`."""
    with strategy.scope():
        model = worker.build(algo, "agreement", batch_norm=batch_norm)
        model.optimizer.build(model.trainable_variables)
    data = strategy.experimental_distribute_dataset(
        worker.dataset(tasks, steps)
    )

    @tf.function
    def step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        return {
            k: strategy.experimental_local_results(v) for k, v in logs.items()
        }

    for batch in data:
        logs = step(batch)
    return model.base.get_weights(), logs


def assert_weights_close(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)


class MirroredTest(parameterized.TestCase):
    @parameterized.parameters(
        ("maml", 2, 4), ("fomaml", 2, 4), ("reptile", 2, 4), ("reptile", 3, 6)
    )
    def test_replicas_match_one_device(self, algo, replicas, tasks):
        single, single_logs = train_single(algo, "agreement", tasks)
        dist, dist_logs = train(strategy_of(replicas), algo, "agreement", tasks)
        assert_weights_close(dist, single)
        # Keras metrics accumulate in float32.
        for key, value in single_logs.items():
            np.testing.assert_allclose(
                dist_logs[key], value, rtol=1e-6, err_msg=key
            )

    @parameterized.parameters("maml", "fomaml", "reptile")
    def test_uneven_split_matches_one_device(self, algo):
        # tf.data splits 7 tasks over 3 replicas as 3 + 3 + 1.
        single, single_logs = train_single(algo, "agreement", 7)
        dist, dist_logs = train_custom_loop(strategy_of(3), algo, 7)
        assert_weights_close(dist, single)
        # Weight statistics are over the global meta-batch: every replica
        # reports the single-device value.
        for key in ("weight_min", "weight_neg_frac"):
            np.testing.assert_allclose(
                [float(v) for v in dist_logs[key]],
                [single_logs[key][-1]] * 3,
                rtol=1e-6,
            )

    @parameterized.parameters("maml", "reptile")
    def test_fit_takes_uneven_split(self, algo):
        # 7 tasks over 3 replicas (3 + 3 + 1) in fit itself.
        single, single_logs = train_single(algo, "agreement", 7)
        dist, dist_logs = train(strategy_of(3), algo, "agreement", 7)
        assert_weights_close(dist, single)
        # The epoch's logs are the metrics' global results: exact.
        for key, value in single_logs.items():
            np.testing.assert_allclose(
                dist_logs[key], value, rtol=1e-6, err_msg=key
            )

    def test_update_moved(self):
        # Guards the test above against comparing untrained weights.
        before = worker.build("maml", "agreement").base.get_weights()
        after, _ = train_single("maml", "agreement", 4)
        self.assertGreater(np.abs(after[0] - before[0]).max(), 1e-3)

    def test_uniform_weighting_is_not_scaled_by_replicas(self):
        # With sum-reducing optimizers a per-replica mean would halve the
        # step and a local 1/N would double it.
        single, _ = train_single("fomaml", "uniform", 4)
        dist, _ = train(strategy_of(2), "fomaml", "uniform", 4)
        assert_weights_close(dist, single)

    def test_batch_norm_moving_statistics_are_global(self):
        # First order: the moving statistics do not need the second order,
        # which is slow to trace through BatchNormalization.
        # 5 tasks over 2 replicas: 3 + 2, so that local means would differ.
        single, _ = train_single("fomaml", "agreement", 5, batch_norm=True)
        dist, _ = train_custom_loop(
            strategy_of(2), "fomaml", 5, batch_norm=True
        )
        # The BatchNormalization weights include the moving statistics.
        assert_weights_close(dist, single)


class HelperTest(absltest.TestCase):
    def test_helpers_are_identity_on_one_device(self):
        self.assertIsNone(distribute.replica_sum())
        self.assertEqual(int(distribute.task_offset(tf.constant(5))), 0)
        x = tf.constant([[1.0, 2.0], [3.0, 6.0]])
        np.testing.assert_allclose(distribute.task_mean(x), [2.0, 4.0])
        self.assertEqual(float(distribute.task_min(tf.constant([2.0, -1]))), -1)

    def test_offsets_and_reductions_over_uneven_replicas(self):
        strategy = strategy_of(3)
        sizes = [3, 2, 0]  # the third replica has no tasks

        def step():
            context = tf.distribute.get_replica_context()
            n = tf.gather(sizes, context.replica_id_in_sync_group)
            values = tf.cast(tf.range(n), tf.float64) + 1.0
            return (
                distribute.task_offset(n),
                distribute.task_mean(values),
                distribute.task_min(values),
            )

        offsets, means, mins = (
            strategy.experimental_local_results(v)
            for v in strategy.run(tf.function(step))
        )
        self.assertEqual([int(o) for o in offsets], [0, 3, 5])
        # Tasks 1, 2, 3 and 1, 2: mean 9 / 5, minimum 1, on every replica.
        np.testing.assert_allclose([float(m) for m in means], [1.8] * 3)
        np.testing.assert_allclose([float(m) for m in mins], [1.0] * 3)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class MultiWorkerTest(absltest.TestCase):
    def test_two_workers_match_one_process(self):
        algo, tasks, steps = "reptile", 4, STEPS
        single = worker.build(algo, "agreement")
        expected_logs = single.fit(
            worker.dataset(tasks, steps), verbose=0
        ).history
        expected = single.base.get_weights()
        # After fit: evaluation's sub-batch seeds count the trained steps.
        expected_scores = single.evaluate(
            worker.eval_dataset(tasks), verbose=0, return_dict=True
        )
        hosts = [f"localhost:{p}" for p in _free_ports(2)]
        out = tempfile.mkdtemp()
        procs = []
        for index in range(2):
            config = {
                "cluster": {"worker": hosts},
                "task": {"type": "worker", "index": index},
            }
            path = os.path.join(out, f"worker{index}.npz")
            procs.append(
                support.start_worker(
                    "distribute_worker",
                    algo,
                    tasks,
                    steps,
                    path,
                    TF_CONFIG=json.dumps(config),
                )
            )
        for proc in procs:
            support.finish_worker(self, proc, timeout=120)
        results = [
            np.load(os.path.join(out, f"worker{i}.npz")) for i in range(2)
        ]
        for result in results:
            actual = [result[f"w{i}"] for i in range(len(expected))]
            assert_weights_close(actual, expected)
            # fit's logs: every log of the single-process run, same values.
            for key, value in expected_logs.items():
                np.testing.assert_allclose(
                    result[f"log_{key}"], value[-1], rtol=1e-6, err_msg=key
                )
            for key, value in expected_scores.items():
                np.testing.assert_allclose(
                    result[f"eval_{key}"], value, rtol=1e-6, err_msg=key
                )


if __name__ == "__main__":
    absltest.main()
