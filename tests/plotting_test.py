"""Tests of the learning-curve plots (keras_ga.plotting)."""

import json
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from keras_ga import plotting

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(root, name, losses, accuracies, every):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,loss,val_accuracy\n")
        for i, (loss, acc) in enumerate(zip(losses, accuracies)):
            f.write(f"{i},{loss},{acc}\n")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"eval_every": every, "iterations": every * len(losses)}, f)
    return folder


class PlottingTest(absltest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

    def test_read_history_formats_agree(self):
        folder = write_run(self.root, "a", [1.5, 1.0], [0.4, 0.6], 50)
        from_csv = plotting.read_history(folder)
        json_path = os.path.join(self.root, "results.json")
        with open(json_path, "w") as f:
            json.dump({"history": {"loss": [1.5, 1.0]}}, f)
        np.testing.assert_allclose(from_csv["loss"], [1.5, 1.0])
        np.testing.assert_allclose(from_csv["val_accuracy"], [0.4, 0.6])
        np.testing.assert_allclose(
            plotting.read_history(json_path)["loss"], [1.5, 1.0]
        )
        self.assertNotIn("epoch", from_csv)
        self.assertEqual(plotting.iterations_per_epoch(folder), 50)

    def test_plot_writes_png(self):
        runs = {
            "maml uniform": write_run(
                self.root, "u", [1.5, 1.0], [0.4, 0.6], 50
            ),
            "maml agreement": write_run(
                self.root, "g", [1.4, 0.9], [0.5, 0.7], 50
            ),
            "dict": {"loss": [2.0, 1.0, 0.5]},
        }
        path = os.path.join(self.root, "curves.png")
        self.assertEqual(
            plotting.plot_learning_curves(runs, path, title="t"), path
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), PNG)

    def test_against_time_draws_minutes_and_skips_missing_values(self):
        runs = {
            "run": {
                "loss": [1.5, 1.0, 0.8],
                "val_accuracy": [float("nan"), 0.6, float("nan")],
                "wall_seconds": [30.0, 90.0, 120.0],
            }
        }
        path = os.path.join(self.root, "time.png")
        import matplotlib.axes

        with mock.patch.object(
            matplotlib.axes.Axes, "plot", autospec=True
        ) as plot:
            plotting.plot_learning_curves(runs, path, against="time")
        (loss_call, val_call) = plot.call_args_list
        np.testing.assert_allclose(loss_call.args[1], [0.5, 1.5, 2.0])
        np.testing.assert_allclose(loss_call.args[2], [1.5, 1.0, 0.8])
        np.testing.assert_allclose(val_call.args[1], [1.5])
        np.testing.assert_allclose(val_call.args[2], [0.6])
        self.assertEqual(
            loss_call.args[0].get_xlabel(), "meta-training wall-clock minutes"
        )

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "`against` must be one of"):
            plotting.plot_learning_curves(
                {"a": {"loss": [1.0]}}, "x.png", against="epochs"
            )
        with self.assertRaisesRegex(ValueError, "run 'a' with \\['loss'\\]"):
            plotting.plot_learning_curves(
                {"a": {"loss": [1.0]}}, "x.png", against="time"
            )
        with self.assertRaisesRegex(ValueError, "must not be empty"):
            plotting.plot_learning_curves({}, "x.png")
        with self.assertRaisesRegex(ValueError, "No run holds any of"):
            plotting.plot_learning_curves(
                {"a": {"loss": [1.0]}}, "x.png", ["acc"]
            )
        empty = os.path.join(self.root, "empty.csv")
        with open(empty, "w") as f:
            f.write("epoch,loss\n")
        with self.assertRaisesRegex(ValueError, "at least one epoch"):
            plotting.read_history(empty)
        bad = os.path.join(self.root, "bad.json")
        with open(bad, "w") as f:
            json.dump({"results": []}, f)
        with self.assertRaisesRegex(ValueError, "'history' entry"):
            plotting.read_history(bad)

    def test_matplotlib_is_imported_lazily(self):
        # TensorFlow itself may import matplotlib, so check the module's
        # namespace rather than sys.modules.
        self.assertFalse(hasattr(plotting, "matplotlib"))
        self.assertFalse(hasattr(plotting, "plt"))


if __name__ == "__main__":
    absltest.main()
