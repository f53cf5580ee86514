r"""Where an unfinished long Omniglot run stands, and where it is heading.

A run of `examples.omniglot` at a paper's budget (60,000 meta-steps of
20-way MAML take about 119 hours on a 2-core CPU) is made in pieces: each
piece resumes from `<run>/backup/`. This report reads the runs' folders
as they are (finished or not) and gives for each:

- the meta-steps done, their share of the budget (`iterations` of its
  `config.json`) and the wall-clock hours they took (`wall_seconds`);
- the validation accuracy (`--val_tasks` tasks of the test characters,
  transductive) of the last three validation points, and its mean;
- a projection to the full budget: a power law in the validation error,
  `log(1 - acc) = a - b log(step)`, fitted by least squares to all the
  validation points so far, evaluated at `iterations`. A power law with
  no floor errs on the optimistic side when training plateaus; it
  ignores an annealed meta-step (Reptile's presets anneal it to 0, which
  helps at the end). `--backtest` checks the method on a finished run:
  the projection from its first `--fraction` of steps against the
  validation accuracy it reached.

The figure draws validation accuracy against meta-steps (log scale) and
against wall-clock hours, one line per run, with the projection dashed
and each run's published figure as a star at its budget.

    python -m benchmarks.long_runs \
        --runs="20-way MAML=benchmarks/runs/o20_maml_uniform_s0" \
        --runs="20-way first-order MAML=benchmarks/runs/o20_fomaml_uniform_s0" \
        --runs="20-way Reptile=benchmarks/runs/o20_reptile_uniform_s0" \
        --published=95.8,89.4,89.43 \
        --backtest=benchmarks/runs/o5_reptile_uniform_s0 --fraction=0.1 \
        --figure=benchmarks/figures/omniglot_20w_long.png
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app
from absl import flags

from benchmarks import _report
from keras_ga import plotting

flags.DEFINE_multi_string(
    "runs", [], "`label=run folder` of an `examples.omniglot` run."
)
flags.DEFINE_list(
    "published",
    [],
    "The published accuracy (%) of each of `--runs`, in order; empty: none.",
)
flags.DEFINE_string(
    "backtest", None, "A finished run to check the projection method on."
)
flags.DEFINE_float(
    "fraction",
    0.1,
    "The share of `--backtest`'s steps the projection is fitted to.",
)
flags.DEFINE_string("figure", None, "The PNG to draw; None draws nothing.")
FLAGS = flags.FLAGS


def curve(run_dir):
    """`(steps, val_accuracy, wall_hours, budget)` of a run folder.

    `steps` are the meta-steps at each validation point; `wall_hours` the
    meta-training hours then; `budget` the run's `iterations`.
    """
    history = plotting.read_history(run_dir)
    if "val_accuracy" not in history:
        raise ValueError(
            f"`runs` must hold validation points. Received: {run_dir!r} "
            f"with {sorted(history)}"
        )
    per_epoch = plotting.iterations_per_epoch(run_dir)
    with open(os.path.join(run_dir, "config.json")) as f:
        budget = int(json.load(f)["iterations"])
    val = history["val_accuracy"]
    keep = ~np.isnan(val)
    steps = per_epoch * np.arange(1, len(val) + 1)
    wall = history.get("wall_seconds", np.full(len(val), np.nan)) / 3600.0
    return steps[keep], val[keep], wall[keep], budget


def project(steps, accuracy, at):
    """The power-law projection of the validation accuracy to step `at`.

    Fits `log(1 - acc) = a - b log(step)` to all the points; returns
    `(accuracy at `at`, b)` (a float for a scalar `at`, an array for an
    array of steps), or `(None, None)` with fewer than 2 points.
    """
    steps = np.asarray(steps, np.float64)
    if len(steps) < 2:
        return None, None
    error = np.clip(1.0 - np.asarray(accuracy, np.float64), 1e-4, None)
    slope, intercept = np.polyfit(np.log(steps), np.log(error), 1)
    projected = 1.0 - np.exp(intercept + slope * np.log(at))
    return (float(projected) if np.ndim(projected) == 0 else projected), -slope


def _runs():
    runs = []
    for entry in FLAGS.runs:
        label, sep, path = entry.partition("=")
        if not sep or not path:
            raise app.UsageError(
                "`--runs` entries must be `label=folder`. "
                f"Received: --runs={entry!r}"
            )
        runs.append((label, path))
    if FLAGS.published and len(FLAGS.published) != len(runs):
        raise app.UsageError(
            "`--published` must give one figure per `--runs` entry. "
            f"Received: {len(FLAGS.published)} figures for {len(runs)} runs"
        )
    return runs


def _row(label, steps, val, wall, budget, published):
    projected, rate = project(steps, val, budget)
    return [
        label,
        f"{int(steps[-1]):,} of {budget:,}",
        f"{100 * steps[-1] / budget:.1f}%",
        _report.fmt(wall[-1], ".2f"),
        " / ".join(f"{100 * v:.1f}" for v in val[-3:]),
        f"{100 * np.mean(val[-3:]):.1f}",
        _report.fmt(None if projected is None else 100 * projected, ".1f"),
        _report.fmt(rate, ".2f"),
        published or "n/a",
    ]


def main(argv):
    del argv
    runs = _runs()
    published = FLAGS.published or [None] * len(runs)
    header = [
        "run",
        "meta-steps done",
        "of budget",
        "wall hours",
        "last 3 val acc (%)",
        "their mean",
        "projected at budget (%)",
        "power b",
        "published (%)",
    ]
    rows, curves = [], {}
    for (label, path), figure in zip(runs, published):
        steps, val, wall, budget = curve(path)
        curves[label] = (steps, val, wall, budget, figure)
        rows.append(_row(label, steps, val, wall, budget, figure))
    print(_report.table(header, rows))
    if FLAGS.backtest:
        steps, val, wall, budget = curve(FLAGS.backtest)
        early = steps <= FLAGS.fraction * budget
        projected, rate = project(steps[early], val[early], budget)
        projected = None if projected is None else 100 * projected
        print(
            f"\nBacktest on {FLAGS.backtest}: fitted to its first "
            f"{int(steps[early][-1]):,} of {budget:,} meta-steps "
            f"({int(early.sum())} validation points), projected "
            f"{_report.fmt(projected, '.1f')}"
            f"% (b = {_report.fmt(rate)}) at {budget:,}; it reached "
            f"{100 * np.mean(val[-3:]):.1f}% (mean of its last 3 points)."
        )
    if FLAGS.figure:
        _draw(curves, FLAGS.figure)
        print(f"\nFigure: {FLAGS.figure}")


def _draw(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, (steps, val, wall, budget, figure) in curves.items():
        (line,) = left.plot(steps, 100 * val, marker="o", ms=3, label=label)
        ahead = np.geomspace(steps[-1], budget, 20)
        projected, _ = project(steps, val, ahead)
        if projected is not None:
            left.plot(ahead, 100 * projected, ls="--", color=line.get_color())
        if figure is not None:
            left.plot(budget, float(figure), "*", ms=9, color=line.get_color())
        right.plot(wall, 100 * val, marker="o", ms=3, label=label)
    left.set_xscale("log")
    left.set_xlabel("meta-steps (dashed: power-law projection; star: paper)")
    right.set_xlabel("meta-training wall-clock hours (2-core CPU)")
    for ax in (left, right):
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    app.run(main)
