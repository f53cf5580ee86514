r"""Omniglot 1-shot, uniform against agreement weighting, over seeds.

For each algorithm of `--algos` and each seed of `--seeds`, trains the
`<algo>_<ways>way_1shot` preset of `examples/configs/omniglot.py` twice
(uniform and agreement weighting, the same initial weights and training
tasks) on the budget of the flags, and meta-tests both on the same 600
test tasks. Each run writes `<out_dir>/<ways>w_<algo>_<weighting>_s<seed>/`
(`examples.train.train_and_evaluate`'s files) and is skipped when its
`results.json` exists, so an interrupted sweep resumes. Data: `--data_dir`,
else `$KERAS_GA_DATA`.

    KERAS_GA_DATA=../shared/data python -m benchmarks.omniglot_seeds \
        --algos=maml,fomaml,reptile --seeds=0,1 --out_dir=/tmp/keras_ga_seeds
    KERAS_GA_DATA=../shared/data python -m benchmarks.omniglot_seeds \
        --ways=20 --algos=maml,fomaml,reptile --seeds=1 --iterations=100 \
        --meta_batch_size=4 --eval_batch_size=10 --bn_momentum=0.99 \
        --nonon_transductive --out_dir=/tmp/keras_ga_seeds

With `--corrupt_fractions` (and `--corruptions`), the training tasks of
each run are corrupted at each fraction, by each corruption, while the
test tasks stay clean; the runs' names end in `_<corruption><percent>`,
and `examples.train`'s weight probe records the share of the agreement
weights that the corrupted tasks get (`corruption_weights` of
`results.json`):

    KERAS_GA_DATA=../shared/data python -m benchmarks.omniglot_seeds \
        --algos=maml --seeds=0,1,2 --iterations=500 --epochs=5 \
        --corrupt_fractions=0,0.1,0.3 --corruptions=shuffle,permute \
        --out_dir=benchmarks/runs/corruption

The tables (one row per run; with corrupted runs, the corrupted tasks'
weight share before and after training; the agreement weights of each
agreement run over its training, from its history; then per (ways, algo,
budget, training tasks) the transductive accuracy of each weighting on
each seed, the agreement-minus-uniform difference per seed and its mean
over seeds with a 95% t-interval). `--out_dir` may hold runs of several
budgets, for example `benchmarks/runs`, the long runs:

    python -m benchmarks.omniglot_seeds --table --out_dir=/tmp/keras_ga_seeds
    python -m benchmarks.omniglot_seeds --table --out_dir=benchmarks/runs
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import numpy as np
from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import _sweep
from examples.configs import ALGOS
from examples.configs import WEIGHTINGS
from examples.configs import omniglot as presets
from keras_ga.sampler import CORRUPTIONS

_sweep.define_flags(default_seeds=["0", "1"])
flags.DEFINE_enum("ways", "5", ["5", "20"], "Classes per task.")
flags.DEFINE_enum(
    "shots",
    "1",
    ["1", "5"],
    "Support examples per class (the `<algo>_<ways>way_<shots>shot` "
    "preset). With one shot, shuffling a task's support labels gives "
    "another valid task; five shots make the support inconsistent.",
)
flags.DEFINE_list("algos", ["maml", "reptile"], f"Algorithms, among {ALGOS}.")
flags.DEFINE_integer("iterations", 1000, "Meta-steps of training per run.")
flags.DEFINE_integer("meta_batch_size", 8, "Training tasks per meta-step.")
flags.DEFINE_integer(
    "epochs",
    1,
    "Keras epochs per run (a divisor of --iterations): the history, and "
    "with corrupted tasks the probe of their weights, have one row each.",
)
flags.DEFINE_integer("eval_tasks", 600, "Meta-test tasks per run.")
flags.DEFINE_integer(
    "eval_batch_size", 20, "At most this many test tasks per meta-batch."
)
flags.DEFINE_float("bn_momentum", 0.9, "Momentum of conv4's BatchNorm.")
flags.DEFINE_bool(
    "non_transductive",
    True,
    "Also meta-test with BatchNorm's moving statistics.",
)
flags.DEFINE_list(
    "corrupt_fractions",
    ["0"],
    "Fractions of corrupted training tasks (keras_ga.sampler); each one "
    "above 0 runs once per corruption of --corruptions. Test tasks stay "
    "clean.",
)
flags.DEFINE_list(
    "corruptions",
    ["shuffle"],
    "Corruptions of the corrupted training tasks: shuffle (labels "
    "permuted at random, noise) or permute (query labels shifted to the "
    "next class, systematic).",
)
flags.register_validator(
    "algos",
    lambda algos: set(algos) <= set(ALGOS),
    f"--algos must list values among {ALGOS}.",
)
flags.register_validator(
    "corrupt_fractions",
    lambda values: all(_is_fraction(v) for v in values),
    "--corrupt_fractions must list numbers in [0, 1].",
)
flags.register_validator(
    "corruptions",
    lambda values: set(values) <= set(CORRUPTIONS),
    f"--corruptions must list values among {CORRUPTIONS}.",
)
FLAGS = flags.FLAGS


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def corruption_settings():
    """`(name suffix, fraction, corruption)` of each training stream."""
    for text in FLAGS.corrupt_fractions:
        fraction = float(text)
        if fraction == 0:
            yield "", 0.0, "shuffle"
            continue
        for corruption in FLAGS.corruptions:
            yield f"_{corruption}{round(100 * fraction)}", fraction, corruption


def runs():
    """`(name, config)` of each run, in order."""
    every = _sweep.epoch_length(FLAGS.iterations, FLAGS.epochs)
    for algo in FLAGS.algos:
        for suffix, fraction, corruption in corruption_settings():
            for seed in (int(s) for s in FLAGS.seeds):
                for weighting in WEIGHTINGS:
                    shots = "" if FLAGS.shots == "1" else f"{FLAGS.shots}s"
                    name = (
                        f"{FLAGS.ways}w{shots}_{algo}_{weighting}_s{seed}"
                        f"{suffix}"
                    )
                    yield (
                        name,
                        dataclasses.replace(
                            presets.PRESETS[
                                f"{algo}_{FLAGS.ways}way_{FLAGS.shots}shot"
                            ],
                            weighting=weighting,
                            seed=seed,
                            corrupt_fraction=fraction,
                            corruption=corruption,
                            iterations=FLAGS.iterations,
                            meta_batch_size=FLAGS.meta_batch_size,
                            eval_every=every,
                            val_tasks=0,
                            eval_tasks=FLAGS.eval_tasks,
                            eval_batch_size=FLAGS.eval_batch_size,
                            non_transductive=FLAGS.non_transductive,
                            bn_momentum=FLAGS.bn_momentum,
                            data_dir=FLAGS.data_dir,
                        ),
                    )


def runs_table(summaries):
    lines = [
        "| ways | algo | training tasks | weighting | seed | "
        "iterations x meta-batch | transductive % | support + one query % "
        "| moving statistics % | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in summaries:
        c, by = run["config"], run["by_protocol"]
        lines.append(
            f"| {c['ways']} | {c['algo']} | {_setting(run)} | "
            f"{c['weighting']} | {c['seed']} | "
            f"{c['iterations']} x {c['meta_batch_size']} | "
            f"{_report.accuracy_cell(by.get('transductive'))} | "
            f"{_report.accuracy_cell(by.get('support_plus_query'))} | "
            f"{_report.accuracy_cell(by.get('moving_stats'))} | "
            f"{run['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def _setting(run) -> str:
    """The run's training stream: `clean` or `<corruption> <percent>%`,
    after `<shots>-shot, ` when the tasks have more than one shot."""
    c = run["config"]
    shots = "" if c.get("shots", 1) == 1 else f"{c['shots']}-shot, "
    if not c.get("corrupt_fraction"):
        return f"{shots}clean"
    return f"{shots}{c['corruption']} {round(100 * c['corrupt_fraction'])}%"


def _budget(run) -> str:
    c = run["config"]
    return f"{c['iterations']} x {c['meta_batch_size']}"


def differences_table(summaries):
    """Agreement minus uniform per (ways, algo, budget, training tasks).

    Runs pair by seed within a group; runs of another budget or another
    training stream are another group, never a seed of this one.
    """
    acc = collections.defaultdict(dict)
    for run in summaries:
        c = run["config"]
        key = (c["ways"], c["algo"], _budget(run), _setting(run))
        acc[key][(c["seed"], c["weighting"])] = (
            100 * run["by_protocol"]["transductive"]["mean"]
        )
    rows = []
    for (ways, algo, budget, setting), values in sorted(acc.items()):
        row = _report.paired_row(values)
        if row is not None:
            rows.append([ways, algo, budget, setting, *row])
    return _report.table(
        [
            "ways",
            "algo",
            "iterations x meta-batch",
            "training tasks",
            *_report.PAIRED_HEADER,
        ],
        rows,
    )


def _at(values, position: float):
    """The value of `values` at `position` (0 first, 1 last) of training."""
    return values[round(position * (len(values) - 1))]


def weights_over_training_table(summaries):
    """The agreement weights of each agreement run over its training.

    From the history's per-epoch means of `weight_neg_frac` (the share of
    negative weights in a meta-batch) and `weight_min` (the smallest
    weight, times N: 1 for uniform weights, below 0 when some task is
    pushed away): their values in the first epoch, half-way and in the
    last epoch.
    """
    rows = []
    for run in summaries:
        c, history = run["config"], run["history"]
        if c["weighting"] != "agreement" or not history.get("weight_min"):
            continue
        negative = history["weight_neg_frac"]
        smallest = [c["meta_batch_size"] * w for w in history["weight_min"]]
        rows.append(
            [
                c["ways"],
                c["algo"],
                _budget(run),
                _setting(run),
                c["seed"],
                " / ".join(
                    f"{100 * _at(negative, p):.1f}" for p in (0, 0.5, 1)
                ),
                " / ".join(f"{_at(smallest, p):+.2f}" for p in (0, 0.5, 1)),
            ]
        )
    return _report.table(
        [
            "ways",
            "algo",
            "iterations x meta-batch",
            "training tasks",
            "seed",
            "negative weights %: first epoch / half-way / last epoch",
            "N min w: first / half-way / last",
        ],
        rows,
    )


def _weight_spread(run) -> list[str]:
    """From the run's last probe record (`weights.json`): the 5th and 95th
    percentiles of N w (1 under uniform weighting) and the correlations
    of the weights with the update norms and with the corruption flags."""
    path = os.path.join(run["run_dir"], "weights.json")
    if not os.path.exists(path):
        return ["-", "-", "-"]
    with open(path) as f:
        last = json.load(f)[-1]
    weight = np.asarray(last["weight"])
    scaled = weight * run["config"]["meta_batch_size"]
    low, high = np.percentile(scaled, [5, 95])
    return [
        f"{low:.2f} to {high:.2f}",
        f"{np.corrcoef(weight, last['update_norm'])[0, 1]:+.2f}",
        f"{np.corrcoef(weight, last['corrupted'])[0, 1]:+.2f}",
    ]


def corruption_table(summaries):
    """The corrupted tasks' share of the Eq. 13 weights, before and after."""
    rows = []
    for run in summaries:
        probe = run.get("corruption_weights")
        if not probe:
            continue
        c, first, last = run["config"], probe[0], probe[-1]
        rows.append(
            [
                c["ways"],
                c["algo"],
                _setting(run),
                c["weighting"],
                c["seed"],
                f"{100 * last['corrupted_fraction']:.1f}",
                f"{100 * first['corrupted_weight_share']:.1f}",
                f"{100 * last['corrupted_weight_share']:.1f}",
                f"{last['mean_weight_corrupted']:+.4f}",
                f"{last['mean_weight_clean']:+.4f}",
                f"{100 * last['negative_fraction_corrupted']:.0f} / "
                f"{100 * last['negative_fraction_clean']:.0f}",
                *_weight_spread(run),
            ]
        )
    return _report.table(
        [
            "ways",
            "algo",
            "training tasks",
            "weighting",
            "seed",
            "corrupted probe tasks %",
            "their weight share % before training",
            "after training",
            "mean weight, corrupted",
            "clean",
            "negative weights %, corrupted / clean",
            "N w, 5th to 95th percentile",
            "corr(w, update norm)",
            "corr(w, corrupted)",
        ],
        rows,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _sweep.run(runs())
    summaries = _report.load_runs(FLAGS.out_dir)
    print(runs_table(summaries))
    print()
    if any(run.get("corruption_weights") for run in summaries):
        print(corruption_table(summaries))
        print()
    print(weights_over_training_table(summaries))
    print()
    print(differences_table(summaries))


if __name__ == "__main__":
    app.run(main)
