"""Tests of keras_ga.set_cpu_threads."""

import os
import subprocess
import sys

import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: the thread pools are fixed when TF starts.
FRESH = """
import keras_ga
import tensorflow as tf
keras_ga.set_cpu_threads({cores})
print(float(tf.reduce_sum(tf.ones([4])) + 1.0))
keras_ga.set_cpu_threads({cores})  # same split again: no error
threading = tf.config.threading
print(threading.get_intra_op_parallelism_threads(),
      threading.get_inter_op_parallelism_threads())
"""


def run_fresh(cores):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", FRESH.format(cores=cores)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


class SetCpuThreadsTest(parameterized.TestCase):
    def test_one_thread_per_op_and_cores_at_once(self):
        self.assertEqual(run_fresh(3), ["5.0", "1", "3"])

    def test_default_is_the_usable_cpus(self):
        cores = len(os.sched_getaffinity(0))
        self.assertEqual(run_fresh(None), ["5.0", "1", str(cores)])

    def test_after_the_runtime_started_is_a_clear_error(self):
        float(tf.reduce_sum(tf.ones([2])))  # starts the runtime here
        current = tf.config.threading.get_inter_op_parallelism_threads()
        with self.assertRaisesRegex(
            RuntimeError, r"before TensorFlow starts.*cores=\d+"
        ):
            keras_ga.set_cpu_threads(current + 7)

    @parameterized.parameters(0, -2, 2.5, True, "2")
    def test_bad_cores(self, cores):
        with self.assertRaisesRegex(
            ValueError, r"`cores` must be a positive integer.*cores="
        ):
            keras_ga.set_cpu_threads(cores)


if __name__ == "__main__":
    absltest.main()
