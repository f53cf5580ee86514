"""End-to-end runs of examples/tune.py (`main` with tiny flags)."""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl import app
from absl import flags
from absl.testing import absltest

from examples import tune
from keras_ga import tuner
from tests import support

DATA_DIR = support.data_dir()
TINY = [
    "--max_trials=2",
    "--epochs=1",
    "--steps_per_epoch=2",
    "--val_tasks=4",
    "--meta_batch_size=2",
    "--num_best=2",
    "--seed=1",
]


def run_main(argv):
    """`tune.main` on its own flags (no clash with other examples' flags)."""
    flag_values = flags.FlagValues()
    tune.define_flags(flag_values)
    flag_values(["tune.py", *argv])
    with mock.patch.object(tune, "FLAGS", flag_values):
        tune.main([])
    return flag_values


def read_json(output_dir, name):
    with open(os.path.join(output_dir, name)) as f:
        return json.load(f)


class TuneExampleTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.output_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.output_dir)

    def test_sine_search_writes_best_hyperparameters_and_resumes(self):
        argv = [
            "--task=sine",
            f"--output_dir={self.output_dir}",
            "--hidden=8",
            "--inner_steps=1,2",
            "--algo=fomaml,reptile",
            *TINY,
        ]
        run_main(argv)
        best = read_json(self.output_dir, "best_hyperparameters.json")
        summary = read_json(self.output_dir, "best_trials.json")
        self.assertEqual(
            summary["objective"], {"name": "val_loss", "direction": "min"}
        )
        trials = summary["trials"]
        self.assertLen(trials, 2)
        self.assertEqual(trials[0]["hyperparameters"], best)
        self.assertLessEqual(trials[0]["score"], trials[1]["score"])
        self.assertCountEqual(best, tuner.SEARCHED)
        self.assertIn(best["algo"], ["fomaml", "reptile"])
        self.assertIn(best["inner_steps"], [1, 2])
        self.assertGreater(best["outer_learning_rate"], 0)
        # A rerun resumes: the same trials, nothing new is run.
        with mock.patch.object(
            tuner.MetaHyperModel, "fit", side_effect=AssertionError("ran")
        ):
            run_main(argv)
        self.assertEqual(
            read_json(self.output_dir, "best_trials.json"), summary
        )

    def test_omniglot_search(self):
        cache_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, cache_dir)
        run_main(
            [
                f"--output_dir={self.output_dir}",
                f"--data_dir={DATA_DIR}",
                f"--cache_dir={cache_dir}",
                "--filters=4",
                "--queries=1",
                "--num_val=10",
                "--algo=fomaml",
                "--weighting=agreement",
                "--inner_steps=1",
                "--inner_learning_rate=0.4",
                "--tuner=random",
                *TINY,
                "--max_trials=1",
            ]
        )
        summary = read_json(self.output_dir, "best_trials.json")
        self.assertEqual(
            summary["objective"], {"name": "val_accuracy", "direction": "max"}
        )
        (trial,) = summary["trials"]
        self.assertTrue(0.0 <= trial["score"] <= 1.0)
        self.assertEqual(
            read_json(self.output_dir, "best_hyperparameters.json"),
            trial["hyperparameters"],
        )
        self.assertEqual(trial["hyperparameters"]["algo"], "fomaml")
        self.assertEqual(trial["hyperparameters"]["inner_learning_rate"], 0.4)
        self.assertTrue(
            os.path.isdir(os.path.join(self.output_dir, "omniglot_random"))
        )

    def test_spec_of_flag_lists(self):
        self.assertIsNone(tune.spec([], float))
        self.assertEqual(tune.spec(["0.4"], float), 0.4)
        self.assertEqual(tune.spec(["1", "5"], int), (1, 5))
        self.assertEqual(tune.spec(["1", "2", "3"], int), [1, 2, 3])
        self.assertEqual(tune.spec(["maml", "reptile"]), ["maml", "reptile"])

    def test_output_dir_is_required(self):
        with self.assertRaisesRegex(
            app.UsageError, "`--output_dir` is required"
        ):
            run_main(["--task=sine"])


if __name__ == "__main__":
    absltest.main()
