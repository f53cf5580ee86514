"""The examples' runs resume after any stop, to the uninterrupted result.

A run is stopped mid-epoch (SIGKILL of a subprocess for the sine
experiment, an exception from a callback for Omniglot), then
`train_and_evaluate` is called again on its folder, as re-running the
example's command does. The resumed run ends on the same weights, the same
meta-test results and the same history as a run never stopped. They are
compared exactly: the resumed run restores the weights and Adam's state
bit for bit (`BackupAndRestore`'s HDF5 file holds the float32 values),
sees the same meta-batches (`EpisodeStreamStart`) and runs the same
deterministic CPU kernels in the same order, so nothing differs.
"""

import dataclasses
import json
import os
import shutil
import signal
import time

import keras
import numpy as np
from absl.testing import absltest

import keras_ga  # noqa: F401 (registers the MetaModel for load_model)
from examples import train
from tests import resume_example_worker as worker
from tests import support

# Epochs of 2 meta-steps, a backup at each, validation every 2nd epoch.
OMNIGLOT = support.tiny_omniglot(
    queries=1,
    iterations=8,
    eval_every=4,
    checkpoint_every=2,
    val_tasks=2,
    non_transductive=False,
)
make_tempdir = support.make_tempdir


def final_weights(run_dir):
    model = keras.models.load_model(os.path.join(run_dir, "checkpoint.keras"))
    return model.base.get_weights()


def history_without_time(run_dir):
    history = train.read_history(run_dir)
    del history["wall_seconds"]
    return history


class Stop(keras.callbacks.Callback):
    """Raises after meta-step `step` of the `fit`s it is given to."""

    def __init__(self, step):
        super().__init__()
        self.step, self.count = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.step:
            raise KeyboardInterrupt("stopped")


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


class SineResumeTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.killed, cls.plain = make_tempdir(cls), make_tempdir(cls)
        # Paused after step 2 of 3 of the agreement run's second epoch:
        # uniform is finished, agreement backed up after its first epoch.
        # It runs while this process trains the uninterrupted reference.
        cls.victim = support.start_worker(
            "resume_example_worker", cls.killed, 11
        )
        cls.addClassCleanup(cls.victim.kill)
        cls.reference = train.train_and_evaluate(worker.SINE, cls.plain)

    def test_killed_sine_run_resumes_to_the_uninterrupted_result(self):
        deadline = time.monotonic() + 240
        while not os.path.exists(os.path.join(self.killed, "paused")):
            self.assertIsNone(self.victim.poll(), "it ended before its pause")
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        self.victim.send_signal(signal.SIGKILL)
        self.victim.wait()
        self.assertEqual(self.victim.returncode, -signal.SIGKILL)
        self.assertFalse(
            os.path.exists(os.path.join(self.killed, "results.json"))
        )

        steps = CountSteps()
        resumed = train.train_and_evaluate(
            worker.SINE, self.killed, callbacks=[steps]
        )
        self.assertEqual(steps.count, 3)  # agreement's second epoch only
        for weighting in ("uniform", "agreement"):
            killed = os.path.join(self.killed, f"reptile_{weighting}")
            plain = os.path.join(self.plain, f"reptile_{weighting}")
            for a, e in zip(final_weights(killed), final_weights(plain)):
                np.testing.assert_array_equal(a, e)
            self.assertEqual(
                resumed["runs"][weighting]["result"],
                self.reference["runs"][weighting]["result"],
            )
            self.assertEqual(
                history_without_time(killed), history_without_time(plain)
            )
            self.assertLen(train.read_history(killed)["loss"], 2)
        self.assertEqual(
            resumed["agreement_minus_uniform"],
            self.reference["agreement_minus_uniform"],
        )


class OmniglotResumeTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plain = make_tempdir(cls)
        cls.reference = train.train_and_evaluate(OMNIGLOT, cls.plain)

    def test_stopped_run_resumes_to_the_uninterrupted_result(self):
        stopped = make_tempdir(self)
        with self.assertRaisesRegex(KeyboardInterrupt, "stopped"):
            # Mid-epoch: after the first step of the third epoch.
            train.train_and_evaluate(OMNIGLOT, stopped, callbacks=[Stop(5)])
        steps = CountSteps()
        resumed = train.train_and_evaluate(OMNIGLOT, stopped, callbacks=[steps])
        self.assertEqual(steps.count, 4)  # from the backup after epoch 2
        for a, e in zip(final_weights(stopped), final_weights(self.plain)):
            np.testing.assert_array_equal(a, e)
        self.assertEqual(resumed["results"], self.reference["results"])
        self.assertEqual(
            history_without_time(stopped), history_without_time(self.plain)
        )
        history = train.read_history(stopped)
        self.assertLen(history["loss"], 4)
        # Validation every 4 meta-steps: after the second and fourth epochs.
        self.assertEqual(
            [v is None for v in history["val_accuracy"]],
            [True, False, True, False],
        )
        seconds = history["wall_seconds"]
        self.assertEqual(seconds, sorted(seconds))
        self.assertEqual(resumed["train_seconds"], round(seconds[-1], 1))
        self.assertIn("--checkpoint_every=2", resumed["command"])

    def test_finished_run_is_not_trained_again(self):
        workdir = os.path.join(make_tempdir(self), "run")
        shutil.copytree(self.plain, workdir)
        steps = CountSteps()
        again = train.train_and_evaluate(OMNIGLOT, workdir, callbacks=[steps])
        self.assertEqual(steps.count, 0)
        self.assertEqual(
            again, json.loads(json.dumps(self.reference, default=float))
        )

        # Stopped after training, before results.json: only meta-tests.
        os.remove(os.path.join(workdir, "results.json"))
        evaluated = train.train_and_evaluate(
            OMNIGLOT, workdir, callbacks=[steps]
        )
        self.assertEqual(steps.count, 0)
        self.assertEqual(evaluated["results"], self.reference["results"])
        self.assertEqual(evaluated["history"], self.reference["history"])

    def test_another_configuration_is_refused(self):
        workdir = make_tempdir(self)
        train.start_run(OMNIGLOT, workdir)
        other = dataclasses.replace(OMNIGLOT, seed=1, data_dir="elsewhere")
        with self.assertRaisesRegex(
            ValueError,
            r"`workdir` holds a run of another configuration.*"
            r"Received: workdir='.*' with seed=1 \(the run's: 0\)\.$",
        ):
            train.train_and_evaluate(other, workdir)


if __name__ == "__main__":
    absltest.main()
