"""End-to-end runs of examples/tune.py (`main` with tiny flags)."""

import contextlib
import io
import json
import os
import shutil
import tempfile
from unittest import mock

from absl import app
from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
from keras_tuner.engine import hyperparameters

from examples import tune
from keras_ga import tuner
from tests import support

DATA_DIR = support.data_dir()
SEARCHED = (
    "algo",
    "weighting",
    "inner_steps",
    "inner_learning_rate",
    "outer_learning_rate",
)
TINY = [
    "--max_trials=2",
    "--epochs=1",
    "--steps_per_epoch=2",
    "--val_tasks=4",
    "--meta_batch_size=2",
    "--num_best=2",
    "--seed=1",
]


def parse(argv):
    """This script's flags, parsed on their own (no clash with others')."""
    flag_values = flags.FlagValues()
    tune.define_flags(flag_values)
    flag_values(["tune.py", *argv])
    return flag_values


def run_main(argv):
    """`tune.main` on its own flags; returns what it printed."""
    flag_values = parse(argv)
    out = io.StringIO()
    with (
        mock.patch.object(tune, "FLAGS", flag_values),
        contextlib.redirect_stdout(out),
    ):
        tune.main([])
    return out.getvalue()


def read_json(output_dir, name):
    with open(os.path.join(output_dir, name)) as f:
        return json.load(f)


class TuneExampleTest(parameterized.TestCase):
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
        printed = run_main(argv)
        best = read_json(self.output_dir, "best_hyperparameters.json")
        summary = read_json(self.output_dir, "best_trials.json")
        self.assertEqual(
            summary["objective"], {"name": "val_loss", "direction": "min"}
        )
        trials = summary["trials"]
        self.assertLen(trials, 2)
        self.assertEqual(trials[0]["hyperparameters"], best)
        self.assertLessEqual(trials[0]["score"], trials[1]["score"])
        self.assertCountEqual(best, SEARCHED)
        self.assertIn(best["algo"], ["fomaml", "reptile"])
        self.assertIn(best["inner_steps"], [1, 2])
        self.assertGreater(best["outer_learning_rate"], 0)
        # Keras Tuner's progress: each trial's values, its epochs and score.
        for line in (
            "Search: Running Trial #1",
            "Search: Running Trial #2",
            "Trial 2 Complete",
            "Best val_loss So Far:",
            "Best trials by val_loss (min):",
        ):
            self.assertIn(line, printed)
        self.assertRegex(
            printed, r"Value +\|Best Value So Far +\|Hyperparameter"
        )
        self.assertRegex(
            printed, r"\n(fomaml|reptile) +\|(fomaml|reptile) +\|algo\n"
        )
        self.assertRegex(printed, r"2/2 - .*loss: .* - val_loss: ")
        # A rerun resumes: the same trials, nothing new is run.
        with mock.patch.object(
            tuner.MetaHyperModel, "fit", side_effect=AssertionError("ran")
        ):
            printed = run_main(argv)
        self.assertEqual(
            read_json(self.output_dir, "best_trials.json"), summary
        )
        self.assertIn("Reloading Tuner from", printed)
        self.assertNotIn("Running Trial", printed)

    def test_omniglot_search(self):
        cache_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, cache_dir)
        printed = run_main(
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
        self.assertIn("Trial 1 Complete", printed)
        self.assertIn("Best val_accuracy So Far:", printed)

    def test_hyperparameters_of_flag_lists(self):
        config = parse(
            [
                "--algo=maml,reptile",
                "--inner_steps=1,5",
                "--inner_learning_rate=0.4",
                "--outer_learning_rate=1e-4,1e-2",
            ]
        ).flag_values_dict()
        space = {p.name: p for p in tune.hyperparameters(config).space}
        self.assertCountEqual(
            space,
            [
                "algo",
                "inner_steps",
                "inner_learning_rate",
                "outer_learning_rate",
            ],
        )  # An empty flag (`--weighting`) leaves the default space's entry.
        self.assertIsInstance(space["algo"], hyperparameters.Choice)
        self.assertEqual(list(space["algo"].values), ["maml", "reptile"])
        self.assertIsInstance(space["inner_steps"], hyperparameters.Int)
        self.assertEqual(
            (space["inner_steps"].min_value, space["inner_steps"].max_value),
            (1, 5),
        )
        self.assertIsInstance(
            space["inner_learning_rate"], hyperparameters.Fixed
        )
        self.assertEqual(space["inner_learning_rate"].value, 0.4)
        outer = space["outer_learning_rate"]
        self.assertIsInstance(outer, hyperparameters.Float)
        self.assertEqual(outer.sampling, "log")
        self.assertEqual((outer.min_value, outer.max_value), (1e-4, 1e-2))
        config = parse(["--inner_steps=1,2,3"]).flag_values_dict()
        (steps,) = tune.hyperparameters(config).space
        self.assertEqual(list(steps.values), [1, 2, 3])

    @parameterized.named_parameters(
        (
            "algo",
            "--algo=maml,sgd",
            "--algo takes names among maml, fomaml, reptile",
        ),
        ("weighting", "--weighting=median", "--weighting takes names among"),
        (
            "steps",
            "--inner_steps=0,3",
            "--inner_steps takes positive integers",
        ),
        ("steps_type", "--inner_steps=1.5", "--inner_steps takes positive"),
        (
            "lr_order",
            "--inner_learning_rate=1.0,0.1",
            "a range with low <= high",
        ),
        ("lr_type", "--outer_learning_rate=fast", "--outer_learning_rate"),
        ("tuner", "--tuner=grid", "random|bayesian|hyperband"),
        ("task", "--task=mnist", "omniglot|sine"),
        (
            "verbose",
            "--verbose=3",
            r"3 is not an integer in the range \[0, 2\]",
        ),
        ("max_trials", "--max_trials=0", "0 is not a positive integer"),
    )
    def test_bad_flags_fail_before_data_loads(self, flag, message):
        argv = [f"--output_dir={self.output_dir}", "--task=sine", flag]
        with (
            mock.patch.object(tune, "episodes") as episodes,
            self.assertRaisesRegex(flags.IllegalFlagValueError, message),
        ):
            run_main(argv)
        episodes.assert_not_called()
        self.assertEqual(os.listdir(self.output_dir), [])

    def test_flags_have_real_help_texts(self):
        flag_values = flags.FlagValues()
        tune.define_flags(flag_values)
        for name in flag_values:
            help_text = flag_values[name].help
            self.assertGreaterEqual(len(help_text.split()), 3, name)

    def test_output_dir_is_required(self):
        with self.assertRaisesRegex(
            app.UsageError, "`--output_dir` is required"
        ):
            run_main(["--task=sine"])


if __name__ == "__main__":
    absltest.main()
