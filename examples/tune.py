r"""Searches meta-learning hyperparameters with Keras Tuner.

Searches `keras_ga.tuner.default_space` (algorithm, task weighting, inner
steps, inner and outer learning rates) on Omniglot N-way K-shot (conv4,
objective: validation query accuracy after adaptation, maximised) or on
sine regression (`--task=sine`, an MLP, objective: validation query loss
after adaptation, minimised):

    python -m examples.tune --output_dir=/tmp/tune_omniglot --max_trials=20
    python -m examples.tune --task=sine --tuner=hyperband \
        --output_dir=/tmp/tune_sine

Each searched flag fixes or narrows one hyperparameter of the space through
the `keras_tuner.HyperParameters` given to the tuner: one value fixes it
(`hp.Fixed`), two numbers `low,high` give a range (`hp.Int` for
`--inner_steps`, `hp.Float` on a log scale for the learning rates), names
or three numbers and more a choice (`hp.Choice`); left empty, the default
space's entry is searched. For example
`--algo=maml --inner_steps=1,5 --inner_learning_rate=0.4`. Flags are
checked before any data is loaded or any file written.

Shows Keras Tuner's progress as it goes (`--verbose`): each trial's
hyperparameters and the best so far, the epochs of its fit, its score and
the best score so far. Rerunning the same command resumes an interrupted
search from `--output_dir` (finished trials are kept, as Keras Tuner does);
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
import keras_tuner
from absl import app
from absl import flags

from examples import _common
from keras_ga import models
from keras_ga import tuner as tuner_lib
from keras_ga.datasets import omniglot
from keras_ga.datasets import sine

FLAGS = flags.FLAGS
TASKS = ("omniglot", "sine")
# The searched flags: the names they may take, or the type of their numbers.
SEARCHED = {
    "algo": tuner_lib.ALGOS,
    "weighting": tuner_lib.WEIGHTINGS,
    "inner_steps": int,
    "inner_learning_rate": float,
    "outer_learning_rate": float,
}
DEFAULT_SIZES = {"omniglot": (1, 15), "sine": (10, 10)}


def define_flags(flag_values=FLAGS) -> None:
    """Defines the flags of this script in `flag_values`."""
    fv = {"flag_values": flag_values}
    count = {"lower_bound": 1, **fv}
    _common.define_thread_flag(flag_values)
    flags.DEFINE_enum(
        "task",
        "omniglot",
        TASKS,
        "Problem: `omniglot` (N-way K-shot classification with conv4, "
        "objective val_accuracy) or `sine` (sine-wave regression with an "
        "MLP, objective val_loss).",
        **fv,
    )
    flags.DEFINE_enum(
        "tuner",
        "random",
        tuner_lib.TUNERS,
        "Keras Tuner search: `random` (RandomSearch), `bayesian` "
        "(BayesianOptimization) or `hyperband` (Hyperband: sets each "
        "trial's epochs itself, up to --epochs, ignores --max_trials).",
        **fv,
    )
    flags.DEFINE_string(
        "output_dir", None, "Folder of the trials and results (required).", **fv
    )
    flags.DEFINE_bool(
        "overwrite", False, "Start over instead of resuming.", **fv
    )
    flags.DEFINE_integer(
        "verbose",
        2,
        "Progress: 0 silent; 1 each trial's hyperparameters and score, "
        "with a progress bar per epoch; 2 the same with one line per "
        "epoch (suits logs).",
        lower_bound=0,
        upper_bound=2,
        **fv,
    )
    flags.DEFINE_integer(
        "max_trials", 10, "Trials of random and bayesian searches.", **count
    )
    flags.DEFINE_integer(
        "epochs", 3, "Epochs per trial (Hyperband: at most).", **count
    )
    flags.DEFINE_integer(
        "steps_per_epoch", 100, "Meta-batches per epoch.", **count
    )
    flags.DEFINE_integer(
        "val_tasks", 100, "Validation tasks after each epoch.", **count
    )
    flags.DEFINE_integer(
        "meta_batch_size", 16, "Tasks per meta-batch.", **count
    )
    flags.DEFINE_integer("ways", 5, "Classes per task (Omniglot).", **count)
    flags.DEFINE_integer(
        "shots",
        None,
        "Support examples per class (sine: points); default 1 (Omniglot), "
        "10 (sine).",
        **count,
    )
    flags.DEFINE_integer(
        "queries",
        None,
        "Query examples per class (sine: points); default 15 (Omniglot), "
        "10 (sine).",
        **count,
    )
    flags.DEFINE_integer(
        "filters", 64, "Filters of each conv4 block (Omniglot).", **count
    )
    flags.DEFINE_list(
        "hidden", ["40", "40"], "Hidden widths of the MLP (sine).", **fv
    )
    flags.DEFINE_integer(
        "num_val",
        100,
        "Training characters held out for validation (Omniglot).",
        **count,
    )
    _define_searched_flags(flag_values)
    flags.DEFINE_integer(
        "eval_inner_steps",
        None,
        "Inner steps on the validation tasks; default: the trial's "
        "inner steps.",
        **count,
    )
    flags.DEFINE_integer(
        "num_best", 3, "Best trials printed and saved.", **count
    )
    flags.DEFINE_integer(
        "seed", 0, "Seed of the tasks, the weights and the tuner.", **fv
    )
    flags.DEFINE_string(
        "data_dir", None, "Omniglot folder; else $KERAS_GA_DATA.", **fv
    )
    flags.DEFINE_string(
        "cache_dir", None, "Folder of the decoded-image cache.", **fv
    )


def _define_searched_flags(flag_values) -> None:
    what = {
        "algo": "Algorithms",
        "weighting": "Task weightings",
        "inner_steps": "Inner SGD steps",
        "inner_learning_rate": "Inner SGD step sizes",
        "outer_learning_rate": "Learning rates of the outer Adam optimizer",
    }
    for name, kind in SEARCHED.items():
        if isinstance(kind, tuple):
            rule = f"names among {', '.join(kind)}"
            how = "one fixes it, several are a choice"
        else:
            rule = "positive " + ("integers" if kind is int else "numbers")
            how = "one fixes it, two are a range `low,high`, more a choice"
            how += " (log scale)" if kind is float else ""
        flags.DEFINE_list(
            name,
            [],
            f"{what[name]} to search, comma-separated {rule}: {how}; "
            "empty: the default space's.",
            flag_values=flag_values,
        )
        flags.register_validator(
            name,
            lambda values, kind=kind: _valid(values, kind),
            message=f"--{name} takes {rule}, a range with low <= high.",
            flag_values=flag_values,
        )


def _valid(values: list[str], kind) -> bool:
    if isinstance(kind, tuple):
        return all(v in kind for v in values)
    try:
        numbers = [kind(v) for v in values]
    except ValueError:
        return False
    in_order = len(numbers) != 2 or numbers[0] <= numbers[1]
    return all(n > 0 and math.isfinite(n) for n in numbers) and in_order


def hyperparameters(config: dict) -> keras_tuner.HyperParameters:
    """The entries the searched flags in `config` fix or narrow."""
    hp = keras_tuner.HyperParameters()
    for name, kind in SEARCHED.items():
        cast = str if isinstance(kind, tuple) else kind
        values = [cast(v) for v in config[name]]
        if len(values) == 1:
            hp.Fixed(name, values[0])
        elif len(values) == 2 and cast is int:
            hp.Int(name, *values)
        elif len(values) == 2 and cast is float:
            hp.Float(name, *values, sampling="log")
        elif values:
            hp.Choice(name, values)
    return hp


def hypermodel(config: dict) -> tuner_lib.MetaHyperModel:
    """The `MetaHyperModel` of the flags in `config`."""
    task = "regression" if config["task"] == "sine" else "classification"
    if config["task"] == "sine":
        hidden = tuple(int(h) for h in config["hidden"])
        build_base = lambda: models.mlp(1, 1, hidden)  # noqa: E731
    else:
        build_base = lambda: models.conv4(  # noqa: E731
            (28, 28, 1), config["ways"], config["filters"]
        )

    def space(hp):
        settings = tuner_lib.default_space(hp, task)
        if config["eval_inner_steps"]:
            settings["eval_inner_steps"] = config["eval_inner_steps"]
        return settings

    return tuner_lib.MetaHyperModel(build_base, task=task, space=space)


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
    fixed = hyperparameters(config)
    model.check_space(fixed)  # Before anything is written.
    search = tuner_lib.make_tuner(
        config["tuner"],
        model,
        directory=output_dir,
        project_name=f"{config['task']}_{config['tuner']}",
        max_trials=config["max_trials"],
        max_epochs=config["epochs"],
        seed=config["seed"],
        overwrite=config["overwrite"],
        hyperparameters=fixed,
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
        verbose=config["verbose"],
    )
    objective = model.objective
    summary = {
        "objective": {"name": objective.name, "direction": objective.direction},
        "trials": tuner_lib.best_trials(search, config["num_best"]),
    }
    write_results(summary, output_dir)
    return summary


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
    if not FLAGS.output_dir:
        raise app.UsageError("`--output_dir` is required.")
    _common.configure_threads(FLAGS)
    summary = tune(FLAGS.flag_values_dict(), FLAGS.output_dir)
    print(table(summary))


if __name__ == "__main__":
    define_flags()
    app.run(main)
