r"""The gradient agreement paper's Omniglot experiments on a CPU budget.

Runs, one after the other, Omniglot 5-way 1-shot and 20-way 1-shot for
maml, fomaml and reptile (the presets of `examples/configs/omniglot.py`),
each with uniform and agreement weighting, with the same seeds, budget and
test tasks, and appends each run's summary to `--results` (JSON lines) as
soon as it finishes; runs already in `--results` are skipped, so an
interrupted sweep resumes. Run artefacts (checkpoints, TensorBoard logs,
CSV histories) go to `--work_dir`. Data: `--data_dir`, else
`$KERAS_GA_DATA` (see `keras_ga.datasets.load_omniglot`).

Command (from the repository root):

    KERAS_GA_DATA=../shared/data python -m benchmarks.paper_experiments \
        --results=benchmarks/paper_experiments.jsonl \
        --work_dir=/tmp/keras_ga_paper

The table for `benchmarks/RESULTS.md` and the learning curves:

    python -m benchmarks.paper_experiments --table \
        --results=benchmarks/paper_experiments.jsonl \
        --work_dir=/tmp/keras_ga_paper --figures=benchmarks/figures
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import app
from absl import flags

from examples import train
from examples.configs import ALGOS
from examples.configs import WEIGHTINGS
from examples.configs import omniglot as presets

# The CPU budget: paper settings (MAML: 60k iterations, meta-batch 32 for
# 5-way and 16 for 20-way) scaled down to fit about 35 minutes on 2 cores.
BUDGETS = {
    5: dict(
        iterations=150,
        meta_batch_size=8,
        eval_every=50,
        val_tasks=20,
        eval_tasks=600,
        non_transductive=True,
    ),
    20: dict(
        iterations=100,
        meta_batch_size=4,
        eval_every=50,
        val_tasks=20,
        eval_tasks=200,
        eval_batch_size=10,
        non_transductive=False,
    ),
}

flags.DEFINE_string(
    "results",
    "benchmarks/paper_experiments.jsonl",
    "JSON lines file: one run's summary per line, appended as runs finish.",
)
flags.DEFINE_string(
    "work_dir", None, "Folder of the runs' artefacts, one sub-folder per run."
)
flags.DEFINE_string(
    "data_dir",
    None,
    "Data root holding omniglot/; default $KERAS_GA_DATA, else "
    "~/.keras_ga/data.",
)
flags.DEFINE_list(
    "ways", ["5", "20"], f"Ways to run, in order, among {sorted(BUDGETS)}."
)
flags.DEFINE_list("algos", list(ALGOS), f"Algorithms to run, among {ALGOS}.")
flags.DEFINE_bool(
    "table",
    False,
    "Only print the Markdown table of `--results` and draw the learning "
    "curves to `--figures`.",
)
flags.DEFINE_string(
    "figures", "benchmarks/figures", "Folder of the learning-curve PNGs."
)
flags.mark_flag_as_required("work_dir")
flags.register_validator(
    "ways",
    lambda ways: all(w.isdigit() and int(w) in BUDGETS for w in ways),
    f"--ways must list values among {sorted(BUDGETS)}.",
)
flags.register_validator(
    "algos",
    lambda algos: set(algos) <= set(ALGOS),
    f"--algos must list values among {ALGOS}.",
)
FLAGS = flags.FLAGS


def configs():
    """The runs' configurations, in order."""
    for ways in (int(w) for w in FLAGS.ways):
        for algo in FLAGS.algos:
            for weighting in WEIGHTINGS:
                yield dataclasses.replace(
                    presets.PRESETS[f"{algo}_{ways}way_1shot"],
                    weighting=weighting,
                    seed=0,
                    eval_seed=1000,
                    data_dir=FLAGS.data_dir,
                    **BUDGETS[ways],
                )


def read_rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def done(path):
    if not os.path.exists(path):
        return set()
    return {_key(r["config"]) for r in read_rows(path)}


def _key(c):
    return (c["ways"], c["algo"], c["weighting"], c["iterations"])


# Table 2 of the paper (Omniglot 1-shot accuracy, %): MAML and Reptile as
# their papers report them, gradient agreement as Eshratifar et al. do.
PAPER = {
    ("maml", "uniform"): {5: "98.7 +- 0.4", 20: "95.8 +- 0.3"},
    ("reptile", "uniform"): {5: "97.68 +- 0.04", 20: "89.43 +- 0.14"},
    ("agreement",): {5: "98.6 +- 0.63", 20: "94.25 +- 0.51"},
}


def _paper(algo, weighting, ways):
    if weighting == "agreement":
        return PAPER[("agreement",)][ways] + " (GA)"
    return PAPER.get((algo, weighting), {}).get(ways, "-")


def _cell(result):
    if result is None:
        return "-"
    return f"{100 * result['mean']:.2f} +- {100 * result['ci95']:.2f}"


def table(path):
    """The comparison table: one row per run, paper numbers beside."""
    text = (
        "| ways | algo | weighting | iterations x meta-batch | steps "
        "train/test | accuracy % (transductive) | non-transductive | "
        "test tasks | train s | paper % |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    for row in read_rows(path):
        c = row["config"]
        by_mode = {r["transductive"]: r for r in row["results"]}
        text += (
            f"| {c['ways']} | {c['algo']} | {c['weighting']} | "
            f"{c['iterations']} x {c['meta_batch_size']} | "
            f"{c['inner_steps']}/{c['eval_inner_steps']} | "
            f"{_cell(by_mode.get(True))} | {_cell(by_mode.get(False))} | "
            f"{by_mode[True]['num_tasks']} | {row['train_seconds']:.0f} | "
            f"{_paper(c['algo'], c['weighting'], c['ways'])} |\n"
        )
    return text


def plot_curves(path, work_dir, figures):
    """Learning curves of the finished runs, one PNG per `ways`."""
    from keras_ga import plotting

    os.makedirs(figures, exist_ok=True)
    for ways in sorted({r["config"]["ways"] for r in read_rows(path)}):
        runs = {
            f"{r['config']['algo']} {r['config']['weighting']}": os.path.join(
                work_dir, r["name"]
            )
            for r in read_rows(path)
            if r["config"]["ways"] == ways
        }
        plotting.plot_learning_curves(
            runs,
            os.path.join(figures, f"omniglot_{ways}w_curves.png"),
            metrics=("loss", "accuracy", "val_accuracy"),
            title=f"Omniglot {ways}-way 1-shot (CPU budget)",
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.table:
        print(table(FLAGS.results))
        plot_curves(FLAGS.results, FLAGS.work_dir, FLAGS.figures)
        return
    finished = done(FLAGS.results)
    for config in configs():
        if _key(dataclasses.asdict(config)) in finished:
            continue
        name = f"omniglot_{config.ways}w_{config.algo}_{config.weighting}"
        start = time.time()
        summary = train.train_and_evaluate(
            config, os.path.join(FLAGS.work_dir, name)
        )
        summary["name"] = name
        summary["wall_seconds"] = round(time.time() - start, 1)
        summary["date"] = time.strftime("%Y-%m-%d", time.gmtime())
        with open(FLAGS.results, "a") as f:
            f.write(json.dumps(summary, default=float) + "\n")


if __name__ == "__main__":
    app.run(main)
