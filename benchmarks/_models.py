"""The trained models shipped in `benchmarks/models/`: format and tools.

`benchmarks/models/MANIFEST.json` is `{"models": [entry, ...]}`; each
entry describes one `.keras` file of the same folder, the base network of
a trained `keras_ga.MetaModel` (no outer optimizer state), how it was
trained, and the figure it was reported with. A model whose inner Adam
carries its moments across meta-steps (`moments="carry"`, the Reptile
reference's) adapts every test task from the moments training left; its
entry names them in `inner_optimizer_state_file` (`<name>.inner_state.npz`,
beside the `.keras` file). `benchmarks/models/README.md` lists
the fields; `FIELDS`, `EVALUATION_FIELDS` and `TRAINING_FIELDS` give their
types and `check_entry` states every rule.

`ship` writes an entry from a finished run's folder (`python -m
benchmarks.ship_model`); `reevaluate` meta-tests an entry again on freshly
sampled test tasks, rebuilding the evaluated `MetaModel` from the entry's
`meta_model` settings around the file's base network (`python -m
benchmarks.reevaluate_models`).
"""

from __future__ import annotations

import json
import math
import os
import re

import keras
import numpy as np
from absl import logging

import keras_ga
from keras_ga import evaluation
from keras_ga.datasets import miniimagenet_episodes
from keras_ga.datasets import omniglot_episodes

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
# The carried inner optimizer state of an entry whose evaluation starts
# from it (inner Adam with `moments="carry"`), beside its `.keras` file.
STATE_SUFFIX = ".inner_state.npz"
MANIFEST = "MANIFEST.json"
# A shipped file above this size gets a warning: the models are committed.
MAX_BYTES = 5 * 2**20

FIELDS = {
    "name": str,
    "file": str,
    "dataset": str,
    "protocol": str,
    "ways": int,
    "shots": int,
    "image_size": int,
    "algo": str,
    "weighting": str,
    "seed": int,
    "evaluation": dict,
    "meta_model": dict,
    "accuracy": float,
    "ci95": float,
    "training": dict,
    "command": str,
    "date": str,
    "hardware": str,
}
EVALUATION_FIELDS = {
    "protocol": str,
    "inner_steps": int,
    "inner_optimizer": str,
    "inner_learning_rate": float,
    "queries": int,
    "num_tasks": int,
    "eval_seed": int,
}
TRAINING_FIELDS = {
    "iterations": int,
    "meta_batch_size": int,
    "train_seconds": float,
}
DATA_PROTOCOLS = {
    "omniglot": ("vinyals", "lake"),
    "miniimagenet": ("ravi_larochelle",),
}
# Evaluation protocol name -> `transductive` of `keras_ga.evaluate_tasks`.
# The manifest's protocol names, and keras_ga.protocols' names for them
# ("moving_statistics" is an older spelling of "moving_stats").
EVAL_PROTOCOLS = {
    "transductive": "transductive",
    "support_plus_query": "support_plus_query",
    "moving_stats": "moving_stats",
    "moving_statistics": "moving_stats",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# At most this many tasks per meta-batch when re-evaluating.
_EVAL_BATCH = 20


def manifest_path(models_dir: str = MODELS_DIR) -> str:
    return os.path.join(models_dir, MANIFEST)


def load_manifest(models_dir: str = MODELS_DIR) -> list[dict]:
    """The entries of `models_dir/MANIFEST.json` (none when it is absent)."""
    path = manifest_path(models_dir)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        manifest = json.load(f)
    if set(manifest) != {"models"} or not isinstance(manifest["models"], list):
        raise ValueError(
            f"{path} must hold {{'models': [entry, ...]}}. "
            f"Received: keys {sorted(manifest)}."
        )
    return manifest["models"]


def write_manifest(entries: list[dict], models_dir: str = MODELS_DIR) -> None:
    """Writes `entries` as `models_dir/MANIFEST.json`, atomically."""
    path = manifest_path(models_dir)
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as f:
        json.dump({"models": entries}, f, indent=2)
        f.write("\n")
    os.replace(partial, path)


def check_entry(entry: dict, models_dir: str = MODELS_DIR) -> None:
    """Checks an entry's fields, their types and values, and its file.

    Raises:
        ValueError: naming every field that is missing, of the wrong type
            or out of range, and a missing file.
    """
    problems = _type_problems(entry, FIELDS, "")
    for field, fields in (
        ("evaluation", EVALUATION_FIELDS),
        ("training", TRAINING_FIELDS),
    ):
        if isinstance(entry.get(field), dict):
            problems += _type_problems(entry[field], fields, f"{field}.")
    if not problems:
        problems = _value_problems(entry, models_dir)
    if problems:
        raise ValueError(
            f"Manifest entry {entry.get('name')!r} is invalid: "
            + "; ".join(problems)
            + "."
        )


def _type_problems(entry, fields, prefix) -> list[str]:
    problems = []
    for name, kind in fields.items():
        if name not in entry:
            problems.append(f"`{prefix}{name}` is missing")
        elif not _is(entry[name], kind):
            problems.append(
                f"`{prefix}{name}` must be {kind.__name__}. Received: "
                f"{prefix}{name}={entry[name]!r}"
            )
    return problems


def _is(value, kind) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _value_problems(entry, models_dir) -> list[str]:
    settings = entry["evaluation"]
    splits = DATA_PROTOCOLS.get(entry["dataset"], ())
    rules = (
        ("name", _NAME.fullmatch(entry["name"]), "a file name stem"),
        ("file", entry["file"] == f"{entry['name']}.keras", "`<name>.keras`"),
        ("dataset", entry["dataset"] in DATA_PROTOCOLS, tuple(DATA_PROTOCOLS)),
        ("protocol", entry["protocol"] in splits, f"one of {splits}"),
        ("ways", entry["ways"] >= 2, ">= 2"),
        ("shots", entry["shots"] >= 1, ">= 1"),
        ("accuracy", 0 <= entry["accuracy"] <= 1, "a fraction in [0, 1]"),
        ("ci95", 0 <= entry["ci95"] <= 1, "a fraction in [0, 1]"),
        ("date", _DATE.fullmatch(entry["date"]), "YYYY-MM-DD"),
    )
    problems = [
        f"`{field}` must be {rule}. Received: {field}={entry[field]!r}"
        for field, ok, rule in rules
        if not ok
    ]
    if settings["protocol"] not in EVAL_PROTOCOLS:
        problems.append(
            f"`evaluation.protocol` must be one of {tuple(EVAL_PROTOCOLS)}. "
            f"Received: evaluation.protocol={settings['protocol']!r}"
        )
    state_file = entry.get("inner_optimizer_state_file")
    if state_file is not None and (
        state_file != f"{entry['name']}{STATE_SUFFIX}"
        or not os.path.isfile(os.path.join(models_dir, state_file))
    ):
        problems.append(
            f"`inner_optimizer_state_file` must be `<name>{STATE_SUFFIX}` "
            f"and exist in {models_dir}. Received: "
            f"inner_optimizer_state_file={state_file!r}"
        )
    if not os.path.isfile(os.path.join(models_dir, entry["file"])):
        problems.append(
            f"`file` must exist in {models_dir}. "
            f"Received: file={entry['file']!r}"
        )
    return problems


def ship(
    run_dir: str,
    name: str,
    *,
    models_dir: str = MODELS_DIR,
    eval_protocol: str = "transductive",
    hardware: str | None = None,
) -> dict:
    """Ships the model of a finished few-shot run as manifest entry `name`.

    Saves the base network of `run_dir/checkpoint.keras` (written by
    `examples.train.train_and_evaluate`) to `models_dir/<name>.keras` and
    adds the entry, or replaces the entry of that name, in the manifest.
    The figures come from `run_dir/results.json` (the result of
    `eval_protocol`), the settings from `run_dir/config.json`.

    Args:
        run_dir: a finished run's folder.
        name: the entry's name and file stem.
        models_dir: the folder of the manifest and the files.
        eval_protocol: which of the run's meta-test results to report.
        hardware: what trained it; default the run's `results.json`.

    Returns:
        The entry.

    Raises:
        ValueError: when the run is not finished (no `results.json`), is
            not a few-shot run, has no result of `eval_protocol`, or the
            entry is invalid (see `check_entry`).
    """
    config, summary = _read_run(run_dir)
    result = _result(summary, eval_protocol, run_dir)
    meta = keras.models.load_model(os.path.join(run_dir, "checkpoint.keras"))
    os.makedirs(models_dir, exist_ok=True)
    path = os.path.join(models_dir, f"{name}.keras")
    meta.base.save(path)
    state_file = None
    if meta.inner_optimizer_state:
        # Inner Adam with `moments="carry"` adapts every test task from
        # the moments training left: they are part of the evaluation.
        state_file = f"{name}{STATE_SUFFIX}"
        np.savez(
            os.path.join(models_dir, state_file),
            *[np.asarray(v) for v in meta.inner_optimizer_state],
        )
    if os.path.getsize(path) > MAX_BYTES:
        logging.warning(
            "%s is %d bytes: large to commit.", path, os.path.getsize(path)
        )
    entry = _entry(name, config, summary, result, meta, eval_protocol)
    if state_file is not None:
        entry["inner_optimizer_state_file"] = state_file
    if hardware is not None:
        entry["hardware"] = hardware
    check_entry(entry, models_dir)
    entries = [e for e in load_manifest(models_dir) if e["name"] != name]
    write_manifest(entries + [entry], models_dir)
    return entry


def _read_run(run_dir):
    paths = [os.path.join(run_dir, f) for f in ("config.json", "results.json")]
    if not os.path.exists(paths[1]):
        raise ValueError(
            "`run_dir` must be a finished run (with results.json): finish it "
            "by re-running its command. Received: "
            f"run_dir={run_dir!r} without results.json."
        )
    config, summary = (_read_json(p) for p in paths)
    if "results" not in summary:
        raise ValueError(
            "`run_dir` must be a few-shot run (Omniglot or miniImageNet). "
            f"Received: run_dir={run_dir!r} of dataset "
            f"{summary.get('dataset')!r}."
        )
    return config, summary


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _protocol_of(result: dict) -> str:
    if "protocol" in result:
        return result["protocol"]
    return "transductive" if result["transductive"] else "moving_stats"


def _result(summary, eval_protocol, run_dir) -> dict:
    found = {_protocol_of(r): r for r in summary["results"]}
    if eval_protocol not in found:
        raise ValueError(
            "`eval_protocol` must be one the run was meta-tested with, "
            f"{tuple(found)}. Received: eval_protocol={eval_protocol!r} "
            f"for run_dir={run_dir!r}."
        )
    return found[eval_protocol]


def _entry(name, config, summary, result, meta, eval_protocol) -> dict:
    meta_config = meta.get_config()
    for key in ("model", "name"):
        meta_config.pop(key)
    dataset = config["dataset"]
    return {
        "name": name,
        "file": f"{name}.keras",
        "dataset": dataset,
        "protocol": config.get("protocol", DATA_PROTOCOLS[dataset][0]),
        "ways": config["ways"],
        "shots": config["shots"],
        "image_size": config["image_size"],
        "algo": config["algo"],
        "weighting": config["weighting"],
        "seed": config["seed"],
        "evaluation": {
            "protocol": eval_protocol,
            "inner_steps": result["steps"],
            "inner_optimizer": config.get("inner_optimizer", "sgd"),
            "inner_learning_rate": config["inner_learning_rate"],
            "queries": config["eval_queries"],
            "num_tasks": result["num_tasks"],
            "eval_seed": config["eval_seed"],
        },
        "meta_model": meta_config,
        "accuracy": result["mean"],
        "ci95": result["ci95"],
        "training": {
            "iterations": config["iterations"],
            "meta_batch_size": config["meta_batch_size"],
            "train_seconds": summary["train_seconds"],
        },
        "command": summary.get("command", ""),
        "date": summary.get("date", ""),
        "hardware": summary.get("hardware", ""),
    }


def load_meta_model(entry: dict, models_dir: str = MODELS_DIR):
    """The compiled `MetaModel` of an entry: its settings, the file's base."""
    base = keras.models.load_model(os.path.join(models_dir, entry["file"]))
    config = dict(
        entry["meta_model"], model=keras.saving.serialize_keras_object(base)
    )
    model = keras_ga.MetaModel.from_config(config)
    model.base.set_weights(base.get_weights())
    state_file = entry.get("inner_optimizer_state_file")
    if state_file is not None:
        with np.load(os.path.join(models_dir, state_file)) as values:
            arrays = [values[f"arr_{i}"] for i in range(len(values.files))]
        if len(arrays) != len(model.inner_optimizer_state):
            raise ValueError(
                f"`inner_optimizer_state_file` must hold the "
                f"{len(model.inner_optimizer_state)} carried inner optimizer "
                f"values of the entry's MetaModel. Received: {state_file} "
                f"with {len(arrays)}"
            )
        for variable, value in zip(model.inner_optimizer_state, arrays):
            variable.assign(value)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def reevaluate(
    entry: dict,
    *,
    models_dir: str = MODELS_DIR,
    eval_seed: int | None = None,
    num_tasks: int | None = None,
    data_dir=None,
) -> evaluation.EvaluationResult:
    """Meta-tests an entry again, on test tasks of `eval_seed`.

    Args:
        entry: a manifest entry.
        models_dir: the folder of its file.
        eval_seed: the test tasks' seed; default `default_eval_seed`.
            The entry's own `eval_seed` reproduces its figure.
        num_tasks: test tasks; default the entry's.
        data_dir: the data root (default `$KERAS_GA_DATA`).

    Returns:
        The `EvaluationResult`, with the entry's evaluation protocol,
        adaptation steps and query size.
    """
    check_entry(entry, models_dir)
    settings = entry["evaluation"]
    if eval_seed is None:
        eval_seed = default_eval_seed(entry)
    num_tasks = num_tasks or settings["num_tasks"]
    model = load_meta_model(entry, models_dir)
    tasks = _test_tasks(entry, eval_seed, num_tasks, data_dir)
    return evaluation.evaluate_tasks(
        model,
        tasks,
        steps=settings["inner_steps"],
        protocol=EVAL_PROTOCOLS[settings["protocol"]],
        verbose=0,
    )


def default_eval_seed(entry: dict) -> int:
    """A seed of fresh test tasks: not the run's test nor validation seed."""
    return entry["evaluation"]["eval_seed"] + 2


def _test_tasks(entry, seed, num_tasks, data_dir):
    batch = max(
        b
        for b in range(1, min(_EVAL_BATCH, num_tasks) + 1)
        if num_tasks % b == 0
    )
    kwargs = dict(
        ways=entry["ways"],
        shots=entry["shots"],
        queries=entry["evaluation"]["queries"],
        meta_batch_size=batch,
        seed=seed,
        num_tasks=num_tasks,
        data_dir=data_dir,
        image_size=entry["image_size"],
    )
    if entry["dataset"] == "omniglot":
        return omniglot_episodes("test", protocol=entry["protocol"], **kwargs)
    return miniimagenet_episodes("test", **kwargs)


HEADER = (
    "name",
    "dataset",
    "N-way K-shot",
    "algo",
    "weighting",
    "evaluation",
    "manifest accuracy",
    "re-evaluated",
    "difference",
    "within CIs",
)


def row(entry: dict, result, eval_seed: int) -> list[str]:
    """A table row: the manifest's figure beside the re-evaluated one.

    "within CIs" says whether the difference is within the half-width of
    the 95% CI of the difference of two independent estimates,
    `sqrt(ci_manifest**2 + ci_new**2)`.
    """
    difference = result.mean - entry["accuracy"]
    bound = math.hypot(result.ci95, entry["ci95"])
    settings = entry["evaluation"]
    return [
        entry["name"],
        f"{entry['dataset']} ({entry['protocol']})",
        f"{entry['ways']}-way {entry['shots']}-shot",
        entry["algo"],
        entry["weighting"],
        f"{settings['protocol']}, {settings['inner_steps']} steps",
        f"{_percent(entry['accuracy'], entry['ci95'])} "
        f"({settings['num_tasks']} tasks, seed {settings['eval_seed']})",
        f"{_percent(result.mean, result.ci95)} "
        f"({result.num_tasks} tasks, seed {eval_seed})",
        f"{100 * difference:+.2f}",
        "yes" if abs(difference) <= bound else "no",
    ]


def _percent(mean, ci95) -> str:
    return f"{100 * mean:.2f} +- {100 * ci95:.2f}%"


def table(rows) -> str:
    """The Markdown table of `row`s under `HEADER`."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
