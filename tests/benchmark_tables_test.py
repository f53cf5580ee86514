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


def write_run(
    root,
    name,
    weighting,
    seed,
    per_task,
    wall=(30.0, 40.0, 51.0),
    **fields,
):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    summary = {
        "config": {
            "weighting": weighting,
            "seed": seed,
            "iterations": fields.pop("iterations", 30),
            "meta_batch_size": fields.pop("meta_batch_size", 8),
            "eval_every": 10,
            "ways": 5,
            "algo": "maml",
            "corrupt_fraction": fields.pop("corrupt_fraction", 0.0),
            "corruption": "permute",
            "shots": fields.pop("shots", 1),
        },
        "train_seconds": wall[-1],
        "history": {"wall_seconds": list(wall), **fields.pop("history", {})},
        "results": [
            {
                "transductive": True,
                "mean": float(np.mean(per_task)),
                "ci95": 0.01,
                "per_task": list(per_task),
            }
        ],
        **fields,
    }
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(summary, f)


def run_module(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def seed_tables(test, root):
    """The lines `benchmarks.omniglot_seeds --table` prints for `root`."""
    done = run_module(
        "benchmarks.omniglot_seeds", "--table", f"--out_dir={root}"
    )
    test.assertEqual(done.returncode, 0, done.stderr)
    return done.stdout.splitlines()


def only_row(lines, prefix):
    """The one line of a table that starts with `prefix`."""
    (row,) = [x for x in lines if x.startswith(prefix)]
    return row


class ReportTest(absltest.TestCase):
    def test_mean_ci_over_seeds_is_a_t_interval(self):
        mean, ci = _report.mean_ci_over_seeds([1.0, 2.0, 6.0])
        self.assertAlmostEqual(mean, 3.0)
        # std (ddof 1) = sqrt(7); t(0.975, 2) = 4.3026527.
        self.assertAlmostEqual(ci, 4.3026527 * np.sqrt(7.0 / 3.0), places=6)
        self.assertEqual(_report.mean_ci_over_seeds([2.5]), (2.5, None))

    def test_mean_ci_over_seeds_uses_t_beyond_ten_seeds(self):
        # Seeds 0..11: variance (ddof 1) 13; t(0.975, 11) = 2.2009852, not
        # the normal 1.96, which would make the interval too narrow.
        _, ci = _report.mean_ci_over_seeds([float(v) for v in range(12)])
        self.assertAlmostEqual(ci, 2.2009852 * np.sqrt(13.0 / 12.0), places=6)

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

    def test_paired_row_tests_the_differences(self):
        values = {(s, "uniform"): 90.0 for s in range(4)}
        for s, d in enumerate([1.0, 2.0, 3.0, 2.0]):
            values[(s, "agreement")] = 90.0 + d
        row = _report.paired_row(values)
        self.assertEqual(len(row), len(_report.PAIRED_HEADER))
        # t = 2 / (sqrt(2/3) / 2) = 4.899 on 3 degrees of freedom.
        self.assertEqual(row[5], "0.016")
        # All four positive: the floor, 2 / 2^4.
        self.assertEqual(row[6], "0.125 (smallest possible 0.125)")
        one = _report.paired_row({(0, "uniform"): 1.0, (0, "agreement"): 2.0})
        self.assertEqual(one[5:], ["-", "-"])

    def test_wilcoxon_p_is_exact_with_ties_and_zeros(self):
        # Ranks of |d|: 1, 2, 3.5, 3.5, 5; the negative sum is 1, and 2 of
        # the 32 sign patterns have a smaller rank sum of 1 or less.
        diffs = [-0.07, 0.1 + 0.2, 0.3, 0.23, 0.5]
        self.assertEqual(_report.wilcoxon_p(diffs), (0.125, 0.0625))
        # A zero difference is dropped: four pairs are left.
        self.assertEqual(
            _report.wilcoxon_p([0.0, 1.0, 2.0, 3.0, 4.0])[1], 0.125
        )
        self.assertEqual(_report.wilcoxon_p([0.0, 0.0]), (1.0, 1.0))
        rng = np.random.default_rng(0)
        for n in (3, 6, 9):
            diffs = rng.normal(0.5, 1.0, n)
            p, _ = _report.wilcoxon_p(diffs)
            # The same rank sums enumerated by another route: every subset
            # of ranks 1..n is one sign pattern.
            ranks = np.argsort(np.argsort(np.abs(diffs))) + 1
            w = min(ranks[diffs > 0].sum(), ranks[diffs < 0].sum())
            sums = [
                sum(
                    r
                    for r, bit in zip(range(1, n + 1), f"{k:0{n}b}")
                    if bit == "1"
                )
                for k in range(2**n)
            ]
            total = n * (n + 1) / 2
            expected = np.mean([min(t, total - t) <= w for t in sums])
            self.assertAlmostEqual(p, expected, places=12)
        with self.assertRaisesRegex(ValueError, "at most 20, got 21"):
            _report.wilcoxon_p(np.arange(1.0, 22.0))

    def test_paired_t_p(self):
        # mean 2, standard error sqrt(4/3)/2, t = 3.464 on 3 degrees of
        # freedom: between the 0.975 (3.182) and 0.99 (4.541) quantiles,
        # two-sided p = 0.0405.
        self.assertAlmostEqual(
            _report.paired_t_p([1.0, 3.0, 3.0, 1.0]), 0.0405, places=4
        )
        self.assertEqual(_report.paired_t_p([0.0, 0.0, 0.0]), 1.0)
        self.assertEqual(_report.paired_t_p([0.5, 0.5]), 0.0)

    def test_load_runs_keeps_the_folder_and_protocols(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        write_run(root, "maml_uniform_s0", "uniform", 0, [1.0, 0.0])
        (run,) = _report.load_runs(root)
        self.assertEqual(run["run_dir"], os.path.join(root, "maml_uniform_s0"))
        self.assertEqual(run["by_protocol"]["transductive"]["mean"], 0.5)

    def test_both_non_transductive_protocols_are_kept(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        write_run(root, "run", "uniform", 0, [1.0])
        path = os.path.join(root, "run", "results.json")
        with open(path) as f:
            summary = json.load(f)
        for name, mean in (("support_plus_query", 0.7), ("moving_stats", 0.4)):
            summary["results"].append(
                {
                    "protocol": name,
                    "transductive": False,
                    "mean": mean,
                    "ci95": 0.02,
                }
            )
        with open(path, "w") as f:
            json.dump(summary, f)
        lines = seed_tables(self, root)
        row = only_row(lines, "| 5 | maml | clean | uniform | 0 |")
        self.assertIn("| 100.00 +- 1.00 | 70.00 +- 2.00 | 40.00 +- 2.00 |", row)


class FamilyComparisonTablesTest(absltest.TestCase):
    def run_module(self, *args):
        return run_module("benchmarks.family_comparison", *args)

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
        # One seed: a mean, but no interval or test over seeds.
        self.assertTrue(paired.endswith("| +0.00 | - | - |"), paired)
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


class OmniglotSeedsTablesTest(absltest.TestCase):
    def test_corrupted_streams_get_their_own_rows(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        probe = [
            {
                "epoch": -1,
                "corrupted_fraction": 0.3,
                "corrupted_weight_share": 0.31,
                "mean_weight_corrupted": 0.12,
                "mean_weight_clean": 0.13,
                "negative_fraction_corrupted": 0.0,
                "negative_fraction_clean": 0.0,
            },
            {
                "epoch": 4,
                "corrupted_fraction": 0.3,
                "corrupted_weight_share": 0.2,
                "mean_weight_corrupted": 0.08,
                "mean_weight_clean": 0.15,
                "negative_fraction_corrupted": 0.25,
                "negative_fraction_clean": 0.0,
            },
        ]
        for seed, (u, a) in enumerate([(0.9, 0.92), (0.8, 0.79)]):
            write_run(root, f"u{seed}", "uniform", seed, [u])
            write_run(root, f"a{seed}", "agreement", seed, [a])
            write_run(
                root,
                f"cu{seed}",
                "uniform",
                seed,
                [u - 0.1],
                corrupt_fraction=0.3,
                corruption_weights=probe,
            )
            write_run(
                root,
                f"ca{seed}",
                "agreement",
                seed,
                [a],
                corrupt_fraction=0.3,
                corruption_weights=probe,
            )
        # The last probe record of one run: 16 tasks, two meta-batches.
        weight = np.tile([0.05, 0.1, 0.15, 0.2], 4)
        record = {
            "epoch": 4,
            "weight": weight.tolist(),
            "update_norm": (2 * weight).tolist(),
            "corrupted": [1.0, 1.0, 0.0, 0.0] * 4,
        }
        with open(os.path.join(root, "ca1", "weights.json"), "w") as f:
            json.dump([record], f)
        lines = seed_tables(self, root)
        self.assertIn(
            "| 5 | maml | permute 30% | agreement | 0 | 30.0 | 31.0 | 20.0 | "
            "+0.0800 | +0.1500 | 25 / 0 | - | - | - |",
            lines,
        )
        # N w = 8 w from 0.4 to 1.6; the 5th and 95th percentiles of 16
        # values, 4 of each, interpolate to 0.40 and 1.60.
        low, high = np.percentile(8 * weight, [5, 95])
        corr = np.corrcoef(weight, record["corrupted"])[0, 1]
        self.assertIn(
            "| 5 | maml | permute 30% | agreement | 1 | 30.0 | 31.0 | 20.0 | "
            f"+0.0800 | +0.1500 | 25 / 0 | {low:.2f} to {high:.2f} | +1.00 | "
            f"{corr:+.2f} |",
            lines,
        )
        clean = only_row(lines, "| 5 | maml | 30 x 8 | clean | 0, 1 |")
        self.assertIn("| +2.00 / -1.00 |", clean)
        corrupt = only_row(lines, "| 5 | maml | 30 x 8 | permute 30% | 0, 1")
        # Differences +12 and +9: mean +10.5, t(1) interval 12.706 * 1.5.
        self.assertIn(f"| +10.50 +- {12.706 * 1.5:.2f} |", corrupt)

    def test_five_shot_streams_are_apart_from_one_shot(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        for shots, (u, a) in ((1, (0.9, 0.92)), (5, (0.95, 0.94))):
            write_run(root, f"u{shots}", "uniform", 0, [u], shots=shots)
            write_run(root, f"a{shots}", "agreement", 0, [a], shots=shots)
        lines = seed_tables(self, root)
        one = only_row(lines, "| 5 | maml | 30 x 8 | clean | 0 |")
        self.assertIn("| +2.00 |", one)
        five = only_row(lines, "| 5 | maml | 30 x 8 | 5-shot, clean | 0 |")
        self.assertIn("| -1.00 |", five)

    def test_runs_of_another_budget_are_another_group(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        write_run(root, "u_short", "uniform", 0, [0.9])
        write_run(root, "a_short", "agreement", 0, [0.92])
        # A long run of seed 0 and its pair: not a second seed of the
        # short budget, and not mixed with it.
        write_run(root, "u_long", "uniform", 0, [0.95], iterations=300)
        write_run(root, "a_long", "agreement", 0, [0.94], iterations=300)
        lines = seed_tables(self, root)
        short = only_row(lines, "| 5 | maml | 30 x 8 | clean | 0 |")
        self.assertIn("| +2.00 |", short)
        long = only_row(lines, "| 5 | maml | 300 x 8 | clean | 0 |")
        self.assertIn("| -1.00 |", long)

    def test_weights_over_training_of_the_agreement_runs(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        uniform = {"weight_min": [0.125] * 5, "weight_neg_frac": [0.0] * 5}
        write_run(root, "u", "uniform", 0, [0.9], history=uniform)
        # Five epochs: first, half-way (the third) and last are reported.
        agreement = {
            "weight_min": [0.1, 0.05, -0.025, 0.0, -0.05],
            "weight_neg_frac": [0.0, 0.01, 0.125, 0.2, 0.25],
        }
        write_run(root, "a", "agreement", 0, [0.92], history=agreement)
        lines = seed_tables(self, root)
        self.assertIn(
            "| 5 | maml | 30 x 8 | clean | 0 | 0.0 / 12.5 / 25.0 | "
            "+0.80 / -0.20 / -0.40 |",
            lines,
        )
        # Uniform runs have no row: their weights are 1/N by definition.
        self.assertEmpty(
            [
                x
                for x in lines
                if x.startswith("| 5 | maml | 30 x 8 | clean | 0 | 0.0 / 0.0")
            ]
        )

    def test_five_shot_runs_are_named_apart(self):
        from absl.testing import flagsaver

        from benchmarks import omniglot_seeds

        if not omniglot_seeds.FLAGS.is_parsed():  # Under pytest.
            omniglot_seeds.FLAGS.mark_as_parsed()
            self.addCleanup(omniglot_seeds.FLAGS.unparse_flags)
        with flagsaver.flagsaver(
            shots="5",
            algos=["maml"],
            seeds=["0"],
            corrupt_fractions=["0.3"],
            corruptions=["shuffle"],
            iterations=500,
            epochs=5,
        ):
            runs = list(omniglot_seeds.runs())
        self.assertEqual(
            [name for name, _ in runs],
            [
                "5w5s_maml_uniform_s0_shuffle30",
                "5w5s_maml_agreement_s0_shuffle30",
            ],
        )
        self.assertEqual({c.shots for _, c in runs}, {5})
        self.assertEqual({c.meta_batch_size for _, c in runs}, {8})


def write_history(folder, val, every, iterations, wall_per_step=0.5):
    """An unfinished run's folder: `config.json` and `history.csv`."""
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"eval_every": every, "iterations": iterations}, f)
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,accuracy,wall_seconds,val_accuracy\n")
        for epoch, acc in enumerate(val):
            wall = wall_per_step * every * (epoch + 1)
            f.write(f"{epoch},0.5,{wall},{'nan' if acc is None else acc}\n")


class LongRunsTest(absltest.TestCase):
    def test_projection_recovers_a_power_law(self):
        from benchmarks import long_runs

        steps = np.array([1000, 2000, 4000, 8000])
        accuracy = 1.0 - 0.4 * (steps / 1000.0) ** -0.5
        projected, rate = long_runs.project(steps, accuracy, 64000)
        self.assertAlmostEqual(rate, 0.5, places=6)
        self.assertAlmostEqual(projected, 1.0 - 0.4 / 8.0, places=6)
        ahead, _ = long_runs.project(steps, accuracy, [16000, 64000])
        np.testing.assert_allclose(ahead, [0.9, 0.95], atol=1e-9)
        self.assertEqual(
            long_runs.project(steps[:1], accuracy[:1], 10), (None, None)
        )

    def test_report_of_an_unfinished_run_and_its_backtest(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        steps = 100 * np.arange(1, 9)
        val = 1.0 - 0.5 * (steps / 100.0) ** -0.25
        # Epochs without validation hold nan, as CSVLogger writes them.
        write_history(
            os.path.join(root, "running"), [*val[:3], None], 100, 10000
        )
        write_history(os.path.join(root, "finished"), val, 100, 800)
        out = run_module(
            "benchmarks.long_runs",
            f"--runs=20-way MAML={root}/running",
            "--published=95.8",
            f"--backtest={root}/finished",
            "--fraction=0.5",
            f"--figure={root}/curves.png",
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        row = next(
            line for line in out.stdout.splitlines() if "| 20-way" in line
        )
        cells = [c.strip() for c in row.strip("|").split("|")]
        self.assertEqual(cells[0], "20-way MAML")
        self.assertEqual(cells[1], "300 of 10,000")
        self.assertEqual(cells[2], "3.0%")
        self.assertEqual(cells[3], "0.04")  # 0.5 s x 300 steps
        want = 100 * (1.0 - 0.5 * 100.0**-0.25)
        self.assertEqual(cells[6], f"{want:.1f}")
        self.assertEqual(cells[8], "95.8")
        self.assertIn(
            "first 400 of 800 meta-steps (4 validation points)", out.stdout
        )
        self.assertIn(f"projected {100 * val[-1]:.1f}% (b = 0.25)", out.stdout)
        self.assertTrue(os.path.getsize(f"{root}/curves.png") > 0)

    def test_published_figures_must_match_the_runs(self):
        out = run_module(
            "benchmarks.long_runs", "--runs=a=/tmp", "--published=1,2"
        )
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("one figure per `--runs` entry", out.stderr)


if __name__ == "__main__":
    absltest.main()
