"""Re-evaluates saved few-shot runs on more test tasks.

Loads each run's `checkpoint.keras` (written by `examples/omniglot.py`) and
meta-tests it on `--eval_tasks` tasks of the Omniglot test split, with the
run's own ways, shots, query size, test seed and adaptation steps, both
transductive and not; prints a Markdown table and appends JSON lines.

    KERAS_GA_DATA=../shared/data python -m benchmarks.reevaluate \
        --eval_tasks=600 /tmp/keras_ga_paper/omniglot_20w_*
"""

import json
import os

import keras
from absl import app
from absl import flags

from keras_ga import evaluation
from keras_ga.datasets import omniglot_episodes

flags.DEFINE_integer("eval_tasks", 600, "Test tasks per run.")
flags.DEFINE_integer("eval_batch_size", 20, "Tasks per meta-batch.")
flags.DEFINE_string("results", None, "JSON lines to append to.")
FLAGS = flags.FLAGS


def reevaluate(run_dir, eval_tasks, eval_batch_size):
    """Both protocols' results of the run saved in `run_dir`."""
    with open(os.path.join(run_dir, "config.json")) as f:
        c = json.load(f)
    model = keras.models.load_model(os.path.join(run_dir, "checkpoint.keras"))
    test = omniglot_episodes(
        "test",
        ways=c["ways"],
        shots=c["shots"],
        queries=c["eval_queries"],
        meta_batch_size=eval_batch_size,
        seed=c["eval_seed"],
        num_tasks=eval_tasks,
        data_dir=c["data_dir"],
    )
    results = [
        evaluation.evaluate_tasks(
            model,
            test,
            steps=c["eval_inner_steps"],
            transductive=mode,
            verbose=0,
        )
        for mode in (True, False)
    ]
    return c, results


def main(argv):
    print("| ways | algo | weighting | transductive % | non-transductive % |")
    print("|---|---|---|---|---|")
    for run_dir in argv[1:]:
        c, results = reevaluate(
            run_dir, FLAGS.eval_tasks, FLAGS.eval_batch_size
        )
        cells = [f"{100 * r.mean:.2f} +- {100 * r.ci95:.2f}" for r in results]
        print(
            f"| {c['ways']} | {c['algo']} | {c['weighting']} | "
            f"{cells[0]} | {cells[1]} |",
            flush=True,
        )
        if FLAGS.results:
            with open(FLAGS.results, "a") as f:
                row = {"run": run_dir, "config": c}
                row["results"] = [r.as_dict() for r in results]
                f.write(json.dumps(row, default=float) + "\n")


if __name__ == "__main__":
    app.run(main)
