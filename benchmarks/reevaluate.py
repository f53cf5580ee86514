r"""Re-evaluates saved few-shot runs on more test tasks.

Loads each run's `checkpoint.keras` and `config.json` (written by
`examples.train.train_and_evaluate`, for example through
`python -m examples.omniglot`) and meta-tests it on `--eval_tasks` tasks
of the test split, with the run's own dataset, ways, shots, query size,
test seed and adaptation steps, under the three protocols
(`examples.train.meta_test`); prints a Markdown table and, with
`--results`, appends JSON lines. Data: `--data_dir`, else the run's own
`data_dir`, else `$KERAS_GA_DATA`.

    KERAS_GA_DATA=../shared/data python -m benchmarks.reevaluate \
        --eval_tasks=600 /tmp/keras_ga_paper/omniglot_20w_*
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
from absl import app
from absl import flags

from examples import train
from examples.configs import FewShotConfig
from keras_ga import protocols

flags.DEFINE_integer("eval_tasks", 600, "Test tasks per run.")
flags.DEFINE_integer(
    "eval_batch_size",
    20,
    "At most this many tasks per meta-batch (the largest divisor of "
    "--eval_tasks that fits).",
)
flags.DEFINE_string(
    "results", None, "JSON lines file to append each run's results to."
)
flags.DEFINE_string(
    "data_dir",
    None,
    "Data root; default the run's own data_dir, else $KERAS_GA_DATA, else "
    "~/.keras_ga/data.",
)
FLAGS = flags.FLAGS


def load_config(run_dir: str) -> FewShotConfig:
    """The configuration saved in `run_dir/config.json`."""
    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    names = {field.name for field in dataclasses.fields(FewShotConfig)}
    return FewShotConfig(**{k: v for k, v in saved.items() if k in names})


def reevaluate(run_dir, eval_tasks, eval_batch_size, data_dir=None):
    """The run's config and its results under both protocols."""
    config = load_config(run_dir)
    config = dataclasses.replace(
        config,
        eval_tasks=eval_tasks,
        eval_batch_size=eval_batch_size,
        non_transductive=True,
        data_dir=data_dir or config.data_dir,
    )
    model = keras.models.load_model(os.path.join(run_dir, "checkpoint.keras"))
    return config, train.meta_test(model, config)


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("Pass one or more run folders.")
    columns = " | ".join(f"{p} %" for p in protocols.PROTOCOLS)
    print(f"| ways | algo | weighting | {columns} |")
    print("|---|---|---|" + "---|" * len(protocols.PROTOCOLS))
    for run_dir in run_dirs:
        config, results = reevaluate(
            run_dir, FLAGS.eval_tasks, FLAGS.eval_batch_size, FLAGS.data_dir
        )
        by_protocol = {
            r.protocol: f"{100 * r.mean:.2f} +- {100 * r.ci95:.2f}"
            for r in results
        }
        cells = " | ".join(by_protocol[p] for p in protocols.PROTOCOLS)
        print(
            f"| {config.ways} | {config.algo} | {config.weighting} | {cells} |",
            flush=True,
        )
        if FLAGS.results:
            with open(FLAGS.results, "a") as f:
                row = {"run": run_dir, "config": dataclasses.asdict(config)}
                row["results"] = [r.as_dict() for r in results]
                f.write(json.dumps(row, default=float) + "\n")


if __name__ == "__main__":
    app.run(main)
