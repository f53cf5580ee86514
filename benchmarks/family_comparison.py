r"""The MAML family at equal budget on Omniglot 5-way 1-shot (issue 17).

Every variant starts from one base, second-order MAML as MAML++ runs it
(`examples/configs/omniglot.py`, preset `mamlpp_5way_1shot`, without its
additions): conv4 with max-pooling, five inner SGD steps of size 0.1 in
training and at test, meta-batch 8, one query example per class, Adam
1e-3. The variants add one piece each, or all of MAML++'s:

    maml        the base
    lslr        + learned per-layer per-step inner rates (MAML++'s LSLR)
    msl_da      + multi-step loss annealed over the first tenth of the run,
                  + derivative-order annealing (first order for its first
                  half)
    mamlpp      the preset's settings: LSLR, multi-step loss, per-step
                BatchNorm statistics and weights, cosine annealing of the
                outer rate (to 1e-5)
    anil        only the `logits` layer adapts
    metasgd     learned per-parameter inner rates (Meta-SGD)

Each variant trains with uniform and with agreement weighting, for every
seed of `--seeds` (a seed fixes the initial weights and the training
tasks, so the two weightings of a seed and all variants of a seed are
paired), for `--iterations` meta-steps in `--epochs` Keras epochs (the
unit of the multi-step loss's and the derivative order's annealing), and
is meta-tested transductively on the same `--eval_tasks` test tasks. Each
run writes `<out_dir>/<variant>_<weighting>_s<seed>/` and is skipped when
its `results.json` exists, so a sweep resumes where it stopped; runs of
other seeds can go to other processes:

    KERAS_GA_DATA=../shared/data python -m benchmarks.family_comparison \
        --seeds=0 --out_dir=benchmarks/runs/family
    python -m benchmarks.family_comparison --table \
        --out_dir=benchmarks/runs/family
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os

import numpy as np
from absl import app
from absl import flags

import keras_ga
from benchmarks import _report
from benchmarks import _sweep
from examples.configs import WEIGHTINGS
from examples.configs import omniglot as presets

VARIANTS = ("maml", "lslr", "msl_da", "mamlpp", "anil", "metasgd")

_sweep.define_flags(default_seeds=["0"])
flags.DEFINE_list("variants", list(VARIANTS), f"Variants, among {VARIANTS}.")
flags.DEFINE_integer("iterations", 1000, "Meta-steps of training per run.")
flags.DEFINE_integer(
    "epochs", 10, "Keras epochs per run (a divisor of --iterations)."
)
flags.DEFINE_integer("eval_tasks", 600, "Meta-test tasks per run.")
flags.register_validator(
    "variants",
    lambda names: set(names) <= set(VARIANTS),
    f"--variants must list values among {VARIANTS}.",
)
FLAGS = flags.FLAGS

_MAMLPP = presets.PRESETS["mamlpp_5way_1shot"]
_BASE = dataclasses.replace(
    _MAMLPP,
    learn_inner_rates="none",
    multi_step_loss_epochs=0,
    per_step_batch_norm="none",
    outer_schedule="constant",
    outer_min_learning_rate=0.0,
)


def variant(name: str, epochs: int) -> dict:
    """The fields that variant `name` changes in the base configuration."""
    msl_epochs = max(1, math.ceil(epochs / 10))
    return {
        "maml": {},
        "lslr": {"learn_inner_rates": "per_layer_per_step"},
        "msl_da": {
            "multi_step_loss_epochs": msl_epochs,
            "first_order_epochs": epochs // 2,
        },
        "mamlpp": {
            "learn_inner_rates": "per_layer_per_step",
            "multi_step_loss_epochs": msl_epochs,
            "per_step_batch_norm": _MAMLPP.per_step_batch_norm,
            "outer_schedule": _MAMLPP.outer_schedule,
            "outer_min_learning_rate": _MAMLPP.outer_min_learning_rate,
        },
        "anil": {"adapt_layers": "logits"},
        "metasgd": {"learn_inner_rates": "per_parameter"},
    }[name]


def runs():
    """`(name, config)` of each run, in order."""
    every = _sweep.epoch_length(FLAGS.iterations, FLAGS.epochs)
    for seed in (int(s) for s in FLAGS.seeds):
        for name in FLAGS.variants:
            for weighting in WEIGHTINGS:
                yield (
                    f"{name}_{weighting}_s{seed}",
                    dataclasses.replace(
                        _BASE,
                        **variant(name, FLAGS.epochs),
                        weighting=weighting,
                        seed=seed,
                        iterations=FLAGS.iterations,
                        eval_every=every,
                        val_tasks=0,
                        eval_tasks=FLAGS.eval_tasks,
                        non_transductive=False,
                        data_dir=FLAGS.data_dir,
                    ),
                )


def _task_paired(a: dict, b: dict) -> str:
    """`a - b` in points, mean +- 95% CI over the same test tasks."""
    mean, ci95, _ = keras_ga.confidence_interval(
        np.asarray(a["per_task"]) - np.asarray(b["per_task"])
    )
    return f"{100 * mean:+.2f} +- {100 * ci95:.2f}"


def _step_seconds(run) -> float:
    """Median seconds per meta-step over the run's epochs.

    The median skips the first epoch's tracing and an epoch stretched by
    a pause (the total `train_seconds` is wall-clock time, pauses
    included).
    """
    wall = np.diff([0.0, *run["history"]["wall_seconds"]])
    return float(np.median(wall)) / run["config"]["eval_every"]


def tables(summaries) -> str:
    """Three Markdown tables of the finished runs.

    One row per run; per variant, agreement - uniform on each seed (paired
    over the test tasks) and over seeds; per variant and weighting, the
    variant - MAML on each seed (paired over the test tasks).
    """
    rows, acc, by_key = [], collections.defaultdict(dict), {}
    for run in summaries:
        c = run["config"]
        name = os.path.basename(run["run_dir"]).rsplit("_", 2)[0]
        result = run["by_protocol"]["transductive"]
        by_key[(name, c["weighting"], c["seed"])] = result
        rows.append(
            [
                name,
                c["weighting"],
                c["seed"],
                f"{c['iterations']} x {c['meta_batch_size']}",
                _report.accuracy_cell(result),
                f"{run['train_seconds']:.0f}",
                f"{_step_seconds(run):.2f}",
            ]
        )
        acc[name][(c["seed"], c["weighting"])] = 100 * result["mean"]
    runs_table = _report.table(
        [
            "variant",
            "weighting",
            "seed",
            "iterations x meta-batch",
            "transductive %",
            "train s",
            "s per meta-step (median epoch)",
        ],
        rows,
    )
    paired = []
    for name in VARIANTS:
        row = _report.paired_row(acc.get(name, {}))
        if row is None:
            continue
        per_task = " / ".join(
            _task_paired(
                by_key[(name, "agreement", s)], by_key[(name, "uniform", s)]
            )
            for s in map(int, row[0].split(", "))
        )
        paired.append([name, *row[:3], per_task, *row[4:]])
    header = _report.PAIRED_HEADER
    paired_table = _report.table(
        [
            "variant",
            *header[:3],
            "agreement - uniform per seed, 95% CI over test tasks",
            *header[4:],
        ],
        paired,
    )
    against = []
    for (name, weighting, seed), result in sorted(by_key.items()):
        base = by_key.get(("maml", weighting, seed))
        if name != "maml" and base is not None:
            against.append([name, weighting, seed, _task_paired(result, base)])
    against_table = _report.table(
        ["variant", "weighting", "seed", "variant - maml, points, 95% CI"],
        against,
    )
    return "\n\n".join([runs_table, paired_table, against_table])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _sweep.run(runs())
    print(tables(_report.load_runs(FLAGS.out_dir)))


if __name__ == "__main__":
    app.run(main)
