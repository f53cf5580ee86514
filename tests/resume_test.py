"""Training survives SIGKILL; a NaN loss stops training with a clear error.

`tests/resume_worker.py` is the training script: BackupAndRestore every
epoch, a ModelCheckpoint to `.keras`, Adam (so that optimizer state
matters) and an episode stream that restarts at the optimizer's step
(`keras_ga.EpisodeStreamStart`).
"""

import os
import signal
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from tests import resume_worker as worker
from tests import support

PAUSE_EPOCH = 1  # killed after epochs 0 and 1 are backed up


def start(work, *args, replicas=1):
    return support.start_worker(
        "resume_worker", work, *args, REPLICAS=str(replicas)
    )


def finish(test, proc):
    support.finish_worker(test, proc, timeout=240)


def results(work):
    final = np.load(os.path.join(work, "final.npz"))
    with open(os.path.join(work, "epochs_run.txt")) as f:
        epochs = int(f.read())
    weights = [final[f"w{i}"] for i in range(len(final.files) - 1)]
    return weights, int(final["iterations"]), epochs


class ResumeTest(parameterized.TestCase):
    @parameterized.parameters(1, 2)
    def test_killed_run_resumes_to_the_uninterrupted_weights(self, replicas):
        # replicas=2: MirroredStrategy on 2 logical CPUs, both runs.
        plain, killed = tempfile.mkdtemp(), tempfile.mkdtemp()
        reference = start(plain, replicas=replicas)
        victim = start(killed, PAUSE_EPOCH, replicas=replicas)
        paused = os.path.join(killed, "paused")
        deadline = time.monotonic() + 240
        while not os.path.exists(paused):
            self.assertIsNone(victim.poll(), "the run ended before its pause")
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.assertEqual(victim.returncode, -signal.SIGKILL)
        self.assertFalse(os.path.exists(os.path.join(killed, "final.npz")))
        finish(self, start(killed, replicas=replicas))
        finish(self, reference)

        expected, steps, epochs = results(plain)
        actual, resumed_steps, resumed_epochs = results(killed)
        total = worker.EPOCHS * worker.STEPS_PER_EPOCH
        self.assertEqual((steps, epochs), (total, worker.EPOCHS))
        # The restart ran only the epochs after the backup, and ended at
        # the same optimizer step (restored with the optimizer state).
        self.assertEqual(resumed_epochs, worker.EPOCHS - PAUSE_EPOCH - 1)
        self.assertEqual(resumed_steps, total)
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
        # The .keras checkpoint of the last epoch holds the same model.
        loaded = keras.models.load_model(os.path.join(killed, "model.keras"))
        for a, e in zip(loaded.base.get_weights(), expected):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)

    def test_stream_starts_at_the_restored_step(self):
        model = worker.build()
        model.optimizer.iterations.assign(3)
        start = keras_ga.EpisodeStreamStart()
        start.set_model(model)
        # One dataset: it reads the start each time iteration begins.
        episodes = worker.resumable_episodes(start.step)
        first = next(iter(episodes))
        start.on_train_begin()
        fourth = next(iter(episodes))
        stream = iter(worker.resumable_episodes(tf.Variable(0, dtype="int64")))
        for _ in range(3):
            next(stream)
        expected = next(stream)
        for key in keras_ga.EPISODE_KEYS:
            np.testing.assert_array_equal(fourth[key], expected[key])
        self.assertFalse(np.array_equal(first["query_x"], fourth["query_x"]))


def nan_after_first_batch():
    """Two meta-batches; the second has a NaN target."""
    stream = worker.resumable_episodes(tf.Variable(0, dtype="int64")).take(2)
    batches = [dict(b) for b in stream]
    batches[1]["query_y"] = tf.tensor_scatter_nd_update(
        batches[1]["query_y"], [[0, 0, 0]], [np.nan]
    )
    return tf.data.Dataset.from_tensor_slices(
        {k: tf.stack([b[k] for b in batches]) for k in batches[0]}
    )


class NaNTest(absltest.TestCase):
    def test_terminate_on_nan_raises_at_the_bad_batch(self):
        model = worker.build()
        with self.assertRaisesRegex(
            RuntimeError, "NaN or Inf loss encountered at batch 1"
        ):
            model.fit(
                nan_after_first_batch(),
                callbacks=[keras.callbacks.TerminateOnNaN(raise_error=True)],
                verbose=0,
            )
        self.assertEqual(int(model.optimizer.iterations), 2)

    def test_terminate_on_nan_stops_gracefully(self):
        model = worker.build()
        history = model.fit(
            nan_after_first_batch().repeat(3),
            callbacks=[keras.callbacks.TerminateOnNaN()],
            verbose=0,
        )
        self.assertEqual(int(model.optimizer.iterations), 2)
        self.assertTrue(np.isnan(history.history["loss"][-1]))

    def test_zero_updates_give_finite_uniform_weights(self):
        # A model already at the targets: every g_i is zero, the agreement
        # normaliser is zero, and the weights fall back to 1 / N.
        base = keras.Sequential(
            [
                keras.Input((1,)),
                keras.layers.Dense(1, kernel_initializer="zeros"),
            ]
        )
        model = keras_ga.MetaModel(base, weighting="agreement")
        model.compile(optimizer="sgd", loss="mse")
        zeros = np.zeros((4, 3, 1), "float32")
        logs = model.train_on_batch(
            {
                "support_x": zeros + 1.0,
                "support_y": zeros,
                "query_x": zeros + 2.0,
                "query_y": zeros,
            },
            return_dict=True,
        )
        self.assertAlmostEqual(logs["weight_min"], 0.25)
        self.assertEqual(logs["loss"], 0.0)


if __name__ == "__main__":
    absltest.main()
