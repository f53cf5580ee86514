r"""Searches meta-learning hyperparameters with Keras Tuner.

Searches the inner learning rate, inner steps, outer learning rate,
algorithm and task weighting of a `MetaModel` (`keras_ga.tuner`) on
Omniglot N-way K-shot (conv4, objective: validation query accuracy after
adaptation, maximised) or on sine regression (`--task=sine`, an MLP,
objective: validation query loss after adaptation, minimised):

    python -m examples.tune --output_dir=/tmp/tune_omniglot --max_trials=20
    python -m examples.tune --task=sine --tuner=hyperband \
        --output_dir=/tmp/tune_sine

Each searched flag takes one value (fixed), two numbers `low,high` (a
range; log scale for learning rates), or, for `--algo`, `--weighting` and
from three numbers on, a list to choose from. For example
`--algo=maml --inner_steps=1,5 --inner_learning_rate=0.4`.

Rerunning the same command resumes an interrupted search from
`--output_dir` (finished trials are kept, as Keras Tuner does);
`--overwrite` starts over. Prints the best trials and writes
`best_hyperparameters.json` (the best trial's values, for
`MetaHyperModel.build_from_values`) and `best_trials.json` (the
`--num_best` best trials with their scores and the objective) to
`--output_dir`. Omniglot data: `--data_dir`, else `$KERAS_GA_DATA` (see
`keras_ga.datasets.load_omniglot`); validation tasks come from
`--num_val` characters held out of the training characters.
"""

from __future__ import annotations

import json
import math
import os

import keras
from absl import app
from absl import flags

from examples import _common
from keras_ga import models
from keras_ga import tuner as tuner_lib
from keras_ga.datasets import omniglot
from keras_ga.datasets import sine

FLAGS = flags.FLAGS
TASKS = ("omniglot", "sine")


def define_flags(flag_values=FLAGS) -> None:
    """Defines the flags of this script in `flag_values`."""
    fv = {"flag_values": flag_values}
    _common.define_thread_flag(flag_values)
    flags.DEFINE_enum("task", "omniglot", TASKS, "Problem.", **fv)
    flags.DEFINE_enum(
        "tuner", "random", tuner_lib.TUNERS, "Keras Tuner search.", **fv
    )
    flags.DEFINE_string("output_dir", None, "Trials and results.", **fv)
    flags.DEFINE_bool("overwrite", False, "Start the search over.", **fv)
    flags.DEFINE_integer("max_trials", 10, "Random/Bayesian trials.", **fv)
    flags.DEFINE_integer(
        "epochs", 3, "Epochs per trial (Hyperband: at most).", **fv
    )
    flags.DEFINE_integer("steps_per_epoch", 100, "Meta-batches/epoch.", **fv)
    flags.DEFINE_integer("val_tasks", 100, "Validation tasks.", **fv)
    flags.DEFINE_integer("meta_batch_size", 16, "Tasks per meta-batch.", **fv)
    flags.DEFINE_integer("ways", 5, "Classes per task (Omniglot).", **fv)
    flags.DEFINE_integer(
        "shots",
        None,
        "Support examples per class (sine: points); "
        "default 1 (Omniglot), 10 (sine).",
        **fv,
    )
    flags.DEFINE_integer(
        "queries",
        None,
        "Query examples per class (sine: points); "
        "default 15 (Omniglot), 10 (sine).",
        **fv,
    )
    flags.DEFINE_integer("filters", 64, "conv4 filters (Omniglot).", **fv)
    flags.DEFINE_list("hidden", ["40", "40"], "MLP widths (sine).", **fv)
    flags.DEFINE_integer("num_val", 100, "Validation characters.", **fv)
    flags.DEFINE_list("algo", list(tuner_lib.ALGOS), "Algorithms.", **fv)
    flags.DEFINE_list(
        "weighting", list(tuner_lib.WEIGHTINGS), "Weightings.", **fv
    )
    flags.DEFINE_list("inner_steps", ["1", "5"], "Inner steps.", **fv)
    flags.DEFINE_list(
        "inner_learning_rate", [], "Inner lr; empty: per task.", **fv
    )
    flags.DEFINE_list(
        "outer_learning_rate", ["1e-4", "1e-2"], "Outer (Adam) lr.", **fv
    )
    flags.DEFINE_integer(
        "eval_inner_steps", None, "Validation steps; default inner.", **fv
    )
    flags.DEFINE_integer("num_best", 3, "Best trials printed.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of tasks, weights, tuner.", **fv)
    flags.DEFINE_string("data_dir", None, "Omniglot data folder.", **fv)
    flags.DEFINE_string("cache_dir", None, "Decoded-image cache.", **fv)


def spec(values: list[str], cast=str):
    """A flag list as a `MetaHyperModel` spec; `None` when empty."""
    values = [cast(v) for v in values]
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and cast is not str:
        return tuple(values)
    return values


def episodes(task, *, seed, num_tasks=None, meta_batch_size, **config):
    """Training (endless) or validation (`num_tasks`) episodes of `task`."""
    if task == "sine":
        return sine.sine_tasks(
            shots=config["shots"],
            queries=config["queries"],
            meta_batch_size=meta_batch_size,
            seed=seed,
            num_tasks=num_tasks,
        )
    return omniglot.omniglot_episodes(
        "train" if num_tasks is None else "val",
        ways=config["ways"],
        shots=config["shots"],
        queries=config["queries"],
        meta_batch_size=meta_batch_size,
        seed=seed,
        num_tasks=num_tasks,
        num_val=config["num_val"],
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        download=False,
    )


def hypermodel(config: dict) -> tuner_lib.MetaHyperModel:
    """The `MetaHyperModel` of the flags in `config`."""
    if config["task"] == "sine":
        hidden = tuple(int(h) for h in config["hidden"])
        build_base = lambda: models.mlp(1, 1, hidden)  # noqa: E731
    else:
        build_base = lambda: models.conv4(  # noqa: E731
            (28, 28, 1), config["ways"], config["filters"]
        )
    model_kwargs = {}
    if config["eval_inner_steps"]:
        model_kwargs["eval_inner_steps"] = config["eval_inner_steps"]
    optional = {
        "inner_learning_rate": spec(config["inner_learning_rate"], float)
    }
    return tuner_lib.MetaHyperModel(
        build_base,
        task="regression" if config["task"] == "sine" else "classification",
        inner_steps=spec(config["inner_steps"], int),
        outer_learning_rate=spec(config["outer_learning_rate"], float),
        algo=spec(config["algo"]),
        weighting=spec(config["weighting"]),
        model_kwargs=model_kwargs,
        **{k: v for k, v in optional.items() if v is not None},
    )


def tune(config: dict, output_dir: str) -> dict:
    """Runs (or resumes) the search; writes and returns the best trials.

    Args:
        config: the flag values (`FLAGS.flag_values_dict()`).
        output_dir: where the tuner keeps its trials and the results go.

    Returns:
        `{"objective": {...}, "trials": [best trials, best first]}`, as
        written to `best_trials.json`.
    """
    keras.utils.set_random_seed(config["seed"])
    model = hypermodel(config)
    search = tuner_lib.make_tuner(
        config["tuner"],
        model,
        directory=output_dir,
        project_name=f"{config['task']}_{config['tuner']}",
        max_trials=config["max_trials"],
        max_epochs=config["epochs"],
        seed=config["seed"],
        overwrite=config["overwrite"],
    )
    val_batch = math.gcd(config["val_tasks"], config["meta_batch_size"])
    search.search(
        episodes(config["task"], seed=config["seed"], **_sizes(config)),
        steps_per_epoch=config["steps_per_epoch"],
        epochs=config["epochs"],
        validation_data=episodes(
            config["task"],
            seed=config["seed"] + 1,
            num_tasks=config["val_tasks"],
            **_sizes(config, val_batch),
        ),
        verbose=0,
    )
    objective = model.objective
    summary = {
        "objective": {"name": objective.name, "direction": objective.direction},
        "trials": tuner_lib.best_trials(search, config["num_best"]),
    }
    write_results(summary, output_dir)
    return summary


DEFAULT_SIZES = {"omniglot": (1, 15), "sine": (10, 10)}


def _sizes(config, meta_batch_size=None):
    keys = ("ways", "num_val", "data_dir", "cache_dir")
    sizes = {k: config[k] for k in keys}
    shots, queries = DEFAULT_SIZES[config["task"]]
    sizes["shots"] = config["shots"] or shots
    sizes["queries"] = config["queries"] or queries
    sizes["meta_batch_size"] = meta_batch_size or config["meta_batch_size"]
    return sizes


def write_results(summary: dict, output_dir: str) -> None:
    """Writes `best_hyperparameters.json` and `best_trials.json`."""
    os.makedirs(output_dir, exist_ok=True)
    best = summary["trials"][0]["hyperparameters"] if summary["trials"] else {}
    for name, content in (
        ("best_hyperparameters.json", best),
        ("best_trials.json", summary),
    ):
        with open(os.path.join(output_dir, name), "w") as f:
            json.dump(content, f, indent=2, sort_keys=True)


def table(summary: dict) -> str:
    """The best trials as text, one line each."""
    objective = summary["objective"]
    lines = [f"Best trials by {objective['name']} ({objective['direction']}):"]
    for rank, trial in enumerate(summary["trials"], 1):
        values = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(trial["hyperparameters"].items())
        )
        lines.append(
            f"{rank}. trial {trial['trial_id']}: {trial['score']:.4f}  {values}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    _common.configure_threads(FLAGS)
    if not FLAGS.output_dir:
        raise app.UsageError("`--output_dir` is required.")
    summary = tune(FLAGS.flag_values_dict(), FLAGS.output_dir)
    print(table(summary))


if __name__ == "__main__":
    define_flags()
    app.run(main)
