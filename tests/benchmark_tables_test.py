"""The comparison tables of the benchmark sweeps, on hand-made run folders."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest

from benchmarks import _report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, name, weighting, seed, per_task, wall=(30.0, 40.0, 51.0)):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    summary = {
        "config": {
            "weighting": weighting,
            "seed": seed,
            "iterations": 30,
            "meta_batch_size": 8,
            "eval_every": 10,
        },
        "train_seconds": wall[-1],
        "history": {"wall_seconds": list(wall)},
        "results": [
            {
                "transductive": True,
                "mean": float(np.mean(per_task)),
                "ci95": 0.01,
                "per_task": list(per_task),
            }
        ],
    }
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(summary, f)


class ReportTest(absltest.TestCase):
    def test_mean_ci_over_seeds_is_a_t_interval(self):
        mean, ci = _report.mean_ci_over_seeds([1.0, 2.0, 6.0])
        self.assertAlmostEqual(mean, 3.0)
        # std (ddof 1) = sqrt(7); t(0.975, 2) = 4.303.
        self.assertAlmostEqual(ci, 4.303 * np.sqrt(7.0 / 3.0), places=6)
        self.assertEqual(_report.mean_ci_over_seeds([2.5]), (2.5, None))

    def test_paired_row_pairs_seeds_with_both_weightings(self):
        values = {
            (0, "uniform"): 90.0,
            (0, "agreement"): 91.5,
            (1, "uniform"): 80.0,
            (1, "agreement"): 79.0,
            (2, "uniform"): 70.0,  # no agreement run: left out
        }
        row = _report.paired_row(values)
        self.assertEqual(row[0], "0, 1")
        self.assertEqual(row[3], "+1.50 / -1.00")
        self.assertTrue(row[4].startswith("+0.25 +- "))
        self.assertIsNone(_report.paired_row({(0, "uniform"): 1.0}))

    def test_load_runs_keeps_the_folder_and_protocols(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        write_run(root, "maml_uniform_s0", "uniform", 0, [1.0, 0.0])
        (run,) = _report.load_runs(root)
        self.assertEqual(run["run_dir"], os.path.join(root, "maml_uniform_s0"))
        self.assertEqual(run["by_protocol"][True]["mean"], 0.5)


class FamilyComparisonTablesTest(absltest.TestCase):
    def run_module(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.family_comparison", *args],
            cwd=REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def test_tables_pair_by_test_task_and_against_maml(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        base = [1.0, 0.8, 0.6, 1.0]
        write_run(root, "maml_uniform_s0", "uniform", 0, base)
        write_run(
            root, "maml_agreement_s0", "agreement", 0, [1.0, 1.0, 0.6, 0.8]
        )
        write_run(root, "msl_da_uniform_s0", "uniform", 0, [1.0, 1.0, 1.0, 1.0])
        done = self.run_module("--table", f"--out_dir={root}")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        # The step time is the median epoch (10, 11 and 30 s of 10 steps).
        self.assertIn(
            "| maml | uniform | 0 | 30 x 8 | 85.00 +- 1.00 | 51 | 1.10 |",
            lines,
        )
        # agreement - uniform on the same tasks: differences 0, +20, 0, -20.
        ci = 1.96 * np.std([0.0, 20.0, 0.0, -20.0]) / 2.0
        (paired,) = [line for line in lines if line.startswith("| maml | 0 |")]
        self.assertIn(f"+0.00 +- {ci:.2f}", paired)
        # msl_da - maml, uniform: differences 0, +20, +40, 0.
        diffs = [0.0, 20.0, 40.0, 0.0]
        ci = 1.96 * np.std(diffs) / 2.0
        self.assertIn(f"| msl_da | uniform | 0 | +15.00 +- {ci:.2f} |", lines)

    def test_epochs_must_divide_the_iterations(self):
        done = self.run_module(
            "--out_dir=/nonexistent", "--iterations=500", "--epochs=3"
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(
            "`--epochs` must divide `--iterations`. Received: epochs=3, "
            "iterations=500.",
            done.stderr,
        )


if __name__ == "__main__":
    absltest.main()
