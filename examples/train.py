"""Meta-training and meta-testing of the examples, importable.

`train_and_evaluate(config, workdir)` runs one example's experiment from
its configuration (`examples.configs`) and writes its files to `workdir`;
the scripts `examples/sine.py`, `examples/omniglot.py` and
`examples/miniimagenet.py` are flags over it, and benchmarks and tests call
it directly:

```python
import dataclasses

from examples import train
from examples.configs import omniglot

config = dataclasses.replace(
    omniglot.PRESETS["maml_5way_1shot"], iterations=200, meta_batch_size=8
)
summary = train.train_and_evaluate(config, "/tmp/omniglot_maml")
print(train.table(summary))
```

A few-shot run (`FewShotConfig`) meta-trains conv4 and meta-tests it on
`eval_tasks` test tasks, transductively and, with `non_transductive`, with
BatchNorm's moving statistics. It writes `config.json`, `history.csv`,
`tensorboard/`, `checkpoint.keras`, `backup/`, `results.json` and
`results.md`.

A sine run (`SineConfig`) meta-trains the MLP twice from the same initial
weights on the same tasks, with uniform and with gradient agreement
weighting, and meta-tests both on the same test tasks. It writes
`config.json`, `results.json`, `results.md`, `figure1.png` (the paper's
Figure 1), `curves.png`, and per run (`<algo>_<weighting>/`)
`history.csv`, `tensorboard/`, `checkpoint.keras` and `backup/`.

Resuming. A run's training state (weights, optimizer state, epoch) is
backed up every `checkpoint_every` meta-steps (default `eval_every`) in
`backup/` of its folder (`keras.callbacks.BackupAndRestore`). To continue
a run after any stop (Ctrl-C, SIGKILL, a reboot), call
`train_and_evaluate` again with the same configuration and `workdir`, that
is, re-run the same command: training resumes from the last backup and
ends on the same weights and results as an uninterrupted run, since the
training episode stream restarts at the restored meta-step
(`keras_ga.EpisodeStreamStart`); at most `checkpoint_every` meta-steps are
trained twice. `history.csv` holds each epoch once (the epochs after the
backup are re-run and rewritten) with `wall_seconds`, the training time of
all the pieces so far; TensorBoard logs continue in the same folder. The
backup is kept after training, so a run stopped during its meta-test
restores its final weights and only meta-tests. Once `results.json` is
written the run is finished: calling again returns that summary without
training or evaluating (`benchmarks/reevaluate.py` meta-tests a finished
run again). A `workdir` holding a run of another configuration (any field
but `data_dir`) is refused. `summary["command"]` gives the example command
that runs (and resumes) it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import platform
import shlex
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import keras_ga
from examples.configs import WEIGHTINGS
from examples.configs import FewShotConfig
from examples.configs import SineConfig
from examples.configs import miniimagenet as miniimagenet_presets
from examples.configs import omniglot as omniglot_presets
from examples.configs import sine as sine_presets
from keras_ga import evaluation
from keras_ga import models
from keras_ga import plotting
from keras_ga import protocols
from keras_ga.datasets import miniimagenet_episodes
from keras_ga.datasets import omniglot_episodes
from keras_ga.datasets import sine_task_params
from keras_ga.datasets import sine_tasks


def train_and_evaluate(
    config: FewShotConfig | SineConfig,
    workdir: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
):
    """Meta-trains and meta-tests `config`, writing its files to `workdir`.

    Resumes the run already in `workdir`, or returns its summary when it is
    finished (see the module docstring).

    Args:
        config: a `FewShotConfig` (one run on Omniglot or miniImageNet) or a
            `SineConfig` (Reptile against gradient agreement on sine tasks).
        workdir: the folder of the run's files (created if needed).
        callbacks: more Keras callbacks for each `fit`, called after the
            run's own (so after its backup at the end of an epoch).

    Returns:
        The summary dict also written to `workdir/results.json`.

    Raises:
        TypeError: if `config` is neither config class.
        ValueError: if `workdir` holds a run of another configuration.
    """
    if isinstance(config, FewShotConfig):
        return _train_and_evaluate_few_shot(config, workdir, callbacks)
    if isinstance(config, SineConfig):
        return _train_and_evaluate_sine(config, workdir, callbacks)
    raise TypeError(
        "`config` must be a FewShotConfig or a SineConfig. "
        f"Received: config={config!r}."
    )


def table(summary: dict) -> str:
    """The Markdown results table of a summary of `train_and_evaluate`."""
    if summary["dataset"] == "sine":
        return _sine_table(summary)
    return FEW_SHOT_HEADER + few_shot_rows(summary)


def write_results(summary: dict, workdir: str) -> None:
    """Writes `results.json` and `results.md` (`table`) to `workdir`."""
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table(summary))


def divisor(num_tasks: int, batch: int) -> int:
    """The largest meta-batch size <= `batch` dividing `num_tasks`."""
    return max(
        b for b in range(1, min(batch, num_tasks) + 1) if num_tasks % b == 0
    )


def epoch_length(config) -> int:
    """Meta-steps per Keras epoch: one backup (and history row) each."""
    every = config.checkpoint_every or config.eval_every
    return min(every, config.iterations)


def validation_freq(config) -> int:
    """Epochs per validation: one every `eval_every` meta-steps."""
    every = min(config.eval_every, config.iterations)
    return max(1, every // epoch_length(config))


def start_run(config, workdir: str) -> dict | None:
    """Prepares `workdir` for `config`; a finished run's summary, else None.

    Writes `config.json` into a new `workdir`. In a `workdir` that already
    holds `config.json`, checks that it is the same run, and returns the
    summary in `results.json` when there is one.

    Raises:
        ValueError: if `workdir` holds a run of another configuration.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump(dataclasses.asdict(config), f, indent=2)
        return None
    with open(path) as f:
        _check_same_run(config, json.load(f), workdir)
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        logging.info("Resuming the run in %s.", workdir)
        return None
    logging.info(
        "The run in %s is finished: returning its results.json (delete it "
        "to meta-test again, or use benchmarks/reevaluate.py).",
        workdir,
    )
    with open(results) as f:
        return json.load(f)


def _check_same_run(config, saved: dict, workdir: str) -> None:
    differ = {
        f.name: (saved.get(f.name, f.default), getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name != "data_dir"
        and saved.get(f.name, f.default) != getattr(config, f.name)
    }
    if differ:
        details = ", ".join(
            f"{name}={new!r} (the run's: {old!r})"
            for name, (old, new) in differ.items()
        )
        raise ValueError(
            "`workdir` holds a run of another configuration: re-run with the "
            "same settings to resume or read it, or choose another folder. "
            f"Received: workdir={workdir!r} with {details}."
        )


def fit(
    model, train_from, val, config, run_dir: str, callbacks=()
) -> dict[str, list]:
    """Trains `config.iterations` meta-steps, resuming from `run_dir/backup`.

    Args:
        model: the compiled MetaModel, with its initial weights.
        train_from: `start -> dataset`, the endless training stream from
            meta-batch `start` (an `EpisodeStreamStart.step`).
        val: validation tasks (may be None), one validation every
            `config.eval_every` meta-steps.
        config: gives the iterations and the epoch length.
        run_dir: where the run's callbacks write (see `run_callbacks`).
        callbacks: more callbacks, after the run's own.

    Returns:
        The whole run's history (`read_history(run_dir)`), across resumes.
    """
    every = epoch_length(config)
    stream_start = keras_ga.EpisodeStreamStart()
    model.fit(
        train_from(stream_start.step),
        steps_per_epoch=every,
        epochs=max(1, config.iterations // every),
        validation_data=val,
        validation_freq=validation_freq(config),
        callbacks=[*run_callbacks(run_dir), stream_start, *callbacks],
        verbose=2,
        shuffle=False,
    )
    return read_history(run_dir)


def run_callbacks(run_dir: str) -> list:
    """History CSV, TensorBoard, the `.keras` checkpoint, then the backup.

    All but the backup come before it in the list, so that a run killed
    between two of them at the end of an epoch re-runs that epoch rather
    than missing its row or its checkpoint. `keras_ga.EpisodeStreamStart`
    goes after the backup (it reads the restored step).
    """
    os.makedirs(run_dir, exist_ok=True)
    return [
        RunHistory(os.path.join(run_dir, "history.csv")),
        keras.callbacks.TensorBoard(
            os.path.join(run_dir, "tensorboard"),
            write_graph=False,
            profile_batch=0,
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoint.keras")
        ),
        # Kept after training: a run stopped while meta-testing restores its
        # final weights and trains no further.
        keras.callbacks.BackupAndRestore(
            os.path.join(run_dir, "backup"),
            double_checkpoint=True,
            delete_checkpoint=False,
        ),
    ]


class RunHistory(keras.callbacks.Callback):
    """`history.csv` of a run over all its pieces, with its wall-clock time.

    One row per epoch: `epoch`, the epoch's logs, and `wall_seconds`, the
    training time of the run so far (added to the logs, so TensorBoard
    and History see it too), summed over the pieces of a resumed run: the
    time each piece took up to its last backup (work lost with a stop is
    not counted; its re-run is). A resumed `fit` first drops the rows of
    the epochs it re-runs, so each epoch appears once. Columns missing
    from an epoch (validation logs between validations) hold `nan`. The
    file is rewritten whole and atomically at each epoch, so a kill never
    leaves half a row.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._rows = None

    def on_train_begin(self, logs=None):
        self._rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is not None:
            return
        # The first epoch of this `fit`: the backup's, after a resume.
        self._rows = [
            r for r in _read_rows(self.path) if int(r["epoch"]) < epoch
        ]
        last = self._rows[-1].get("wall_seconds") if self._rows else None
        self._offset = float(last or 0.0)
        self._start = time.monotonic()
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        logs["wall_seconds"] = self._offset + time.monotonic() - self._start
        self._rows.append({"epoch": epoch, **logs})
        self._write()

    def _write(self):
        columns = list(dict.fromkeys(k for row in self._rows for k in row))
        partial = f"{self.path}.{os.getpid()}.tmp"
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, columns or ["epoch"], restval="nan")
            writer.writeheader()
            writer.writerows(self._rows)
        os.replace(partial, self.path)


def _read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_history(run_dir: str) -> dict[str, list]:
    """`run_dir/history.csv` as `{column: values}`; `nan` read as None.

    The values are floats, one per epoch of the whole run (see
    `RunHistory`); None where an epoch has no value (JSON-safe).
    """
    rows = _read_rows(os.path.join(run_dir, "history.csv"))
    columns = [k for k in dict.fromkeys(k for r in rows for k in r)]
    return {
        k: [_number(r.get(k, "nan")) for r in rows]
        for k in columns
        if k != "epoch"
    }


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) else value


def machine() -> str:
    """The CPU model, its logical cores, and the GPUs TensorFlow sees."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln for ln in f if ln.startswith("model name")]
        if names:
            model = names[0].split(":", 1)[1].strip()
    except OSError:
        pass
    gpus = [
        tf.config.experimental.get_device_details(gpu).get(
            "device_name", gpu.name
        )
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    return ", ".join([f"{model}", f"{os.cpu_count()} logical cores", *gpus])


_PRESETS = {
    "omniglot": omniglot_presets,
    "miniimagenet": miniimagenet_presets,
    "sine": sine_presets,
}


def command_line(config, workdir: str) -> str:
    """The example command that runs `config` into `workdir` (and resumes).

    It names the preset closest to `config` and the flags of the fields
    that differ from it (`data_dir` left to `$KERAS_GA_DATA`).
    """
    dataset = getattr(config, "dataset", "sine")
    presets = _PRESETS[dataset].PRESETS
    name = min(presets, key=lambda n: len(_changes(presets[n], config)))
    flags = [f"--preset={name}"] + [
        f"--{field}={str(value).lower() if isinstance(value, bool) else value}"
        for field, value in _changes(presets[name], config).items()
    ]
    flags.append(f"--output_dir={shlex.quote(str(workdir))}")
    return " ".join([f"python -m examples.{dataset}", *flags])


def _changes(preset, config) -> dict:
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("dataset", "data_dir")
        and getattr(config, f.name) is not None
        and getattr(config, f.name) != getattr(preset, f.name)
    }


def _run_facts(config, workdir: str, train_seconds: float) -> dict:
    """What every summary states: command, machine, date, training time."""
    return {
        "command": command_line(config, workdir),
        "hardware": machine(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "train_seconds": round(train_seconds, 1),
    }


# Per dataset: its episode loader, image channels, the split of the
# validation tasks (logged for learning curves, not used for model
# selection), and conv4's head (global average pooling as in MAML's
# Omniglot network, flattened 5x5 features as in its miniImageNet network).
_DATASETS = {
    "omniglot": {
        "episodes": omniglot_episodes,
        "channels": 1,
        "val_split": "test",
        "global_pool": True,
    },
    "miniimagenet": {
        "episodes": miniimagenet_episodes,
        "channels": 3,
        "val_split": "val",
        "global_pool": False,
    },
}


def episodes(config: FewShotConfig, split: str, **kwargs):
    """The episode dataset of `split` of `config.dataset`.

    Args:
        config: gives the dataset, ways, shots, image size and data folder.
        split: `"train"`, `"val"` or `"test"`.
        **kwargs: `queries`, `meta_batch_size`, `seed`, `num_tasks`, as in
            `keras_ga.datasets.omniglot_episodes`.
    """
    return _DATASETS[config.dataset]["episodes"](
        split,
        ways=config.ways,
        shots=config.shots,
        data_dir=config.data_dir,
        image_size=config.image_size,
        **kwargs,
    )


def training_tasks(config: FewShotConfig | SineConfig, start=0):
    """The endless training stream of `config`, from meta-batch `start`.

    Seeded by `config.seed`, with `config.corrupt_fraction` of its tasks
    corrupted by `config.corruption`; `start` is an int or an
    `EpisodeStreamStart.step`.
    """
    kwargs = dict(
        queries=config.queries,
        meta_batch_size=config.meta_batch_size,
        seed=config.seed,
        start=start,
        corrupt_fraction=config.corrupt_fraction,
        corruption=config.corruption,
    )
    if isinstance(config, SineConfig):
        return sine_tasks(shots=config.shots, **kwargs)
    return episodes(config, "train", **kwargs)


def fixed_tasks(config: FewShotConfig, split: str, num_tasks: int, seed: int):
    """`num_tasks` fixed tasks of `split` in meta-batches that divide them."""
    return episodes(
        config,
        split,
        queries=config.eval_queries,
        meta_batch_size=divisor(num_tasks, config.eval_batch_size),
        seed=seed,
        num_tasks=num_tasks,
    )


def build_few_shot_model(config: FewShotConfig):
    """The compiled MetaModel of `config` on conv4, seeded by `config.seed`."""
    keras.utils.set_random_seed(config.seed)
    channels = _DATASETS[config.dataset]["channels"]
    base = models.conv4(
        (config.image_size, config.image_size, channels),
        config.ways,
        config.filters,
        global_pool=_DATASETS[config.dataset]["global_pool"],
        bn_momentum=config.bn_momentum,
    )
    model = keras_ga.MetaModel(
        base,
        algo=config.algo,
        weighting=config.weighting,
        inner_steps=config.inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        eval_inner_steps=config.eval_inner_steps,
        # Reptile adapts on the whole support set at each step: with BatchNorm
        # a sub-batch of one example would normalise to zero.
        inner_batch_size=config.ways * config.shots,
        pre_adaptation_metrics=False,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.outer_learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def meta_test(model, config: FewShotConfig) -> list:
    """`model`'s results on `config.eval_tasks` test tasks, per protocol.

    Transductive first, then, with `config.non_transductive`, the two
    non-transductive protocols of `keras_ga.protocols` (support set plus
    one query example; BatchNorm's moving statistics); each task adapts
    with `config.eval_inner_steps` steps.
    """
    test = fixed_tasks(config, "test", config.eval_tasks, config.eval_seed)
    modes = (
        protocols.PROTOCOLS if config.non_transductive else ("transductive",)
    )
    results = [
        evaluation.evaluate_tasks(
            model,
            test,
            steps=config.eval_inner_steps,
            protocol=mode,
            verbose=0,
        )
        for mode in modes
    ]
    for result in results:
        logging.info("%s %s", config.dataset, result)
    return results


def _train_and_evaluate_few_shot(config, workdir, callbacks) -> dict:
    finished = start_run(config, workdir)
    if finished is not None:
        return finished
    val = None
    if config.val_tasks:
        val_split = _DATASETS[config.dataset]["val_split"]
        val = fixed_tasks(
            config, val_split, config.val_tasks, config.eval_seed + 1
        )
    model = build_few_shot_model(config)
    train_from = functools.partial(training_tasks, config)
    history = fit(model, train_from, val, config, workdir, callbacks)
    start = time.time()
    results = meta_test(model, config)
    summary = {
        "dataset": config.dataset,
        "config": dataclasses.asdict(config),
        **_run_facts(config, workdir, history["wall_seconds"][-1]),
        "eval_seconds": round(time.time() - start, 1),
        "history": history,
        "results": [r.as_dict() for r in results],
    }
    write_results(summary, workdir)
    return summary


FEW_SHOT_HEADER = (
    "| dataset | ways | shots | algo | weighting | iterations | meta-batch "
    "| steps (train/test) | protocol | accuracy | 95% CI | tasks |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def few_shot_rows(summary: dict) -> str:
    """Markdown rows (under `FEW_SHOT_HEADER`) of a few-shot summary."""
    c = summary["config"]
    rows = []
    for r in summary["results"]:
        mode = r.get("protocol") or (
            "transductive" if r["transductive"] else "moving_stats"
        )
        rows.append(
            f"| {summary['dataset']} | {c['ways']} | {c['shots']} | "
            f"{c['algo']} | {c['weighting']} | {c['iterations']} | "
            f"{c['meta_batch_size']} | {c['inner_steps']}/{r['steps']} | "
            f"{mode} | {100 * r['mean']:.2f}% | {100 * r['ci95']:.2f}% | "
            f"{r['num_tasks']} |\n"
        )
    return "".join(rows)


# At most this many sine tasks per meta-batch at validation and test.
_SINE_EVAL_BATCH = 50
PAPER_MSE = {"uniform": 0.13, "agreement": 0.08}


def build_sine_model(config: SineConfig, weighting: str, initial_weights=None):
    """The compiled MetaModel of `config` with `weighting` on the MLP."""
    keras.utils.set_random_seed(config.seed)
    base = models.mlp(1, 1, (config.hidden, config.hidden))
    if initial_weights is not None:
        base.set_weights(initial_weights)
    model = keras_ga.MetaModel(
        base,
        algo=config.algo,
        weighting=weighting,
        inner_steps=config.inner_steps,
        eval_inner_steps=config.eval_inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        # Every inner step sees the 10 support points (paper, Figure 1).
        inner_batch_size=config.shots,
        pre_adaptation_metrics=False,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.outer_learning_rate),
        loss="mse",
    )
    return model


def _sine_test_tasks(config: SineConfig, num_tasks: int, seed: int):
    return sine_tasks(
        shots=config.shots,
        queries=config.eval_queries,
        meta_batch_size=divisor(num_tasks, _SINE_EVAL_BATCH),
        seed=seed,
        num_tasks=num_tasks,
    )


def _train_sine(config, weighting, run_dir, initial_weights, callbacks):
    """Meta-trains one weighting; returns the model and the history."""
    model = build_sine_model(config, weighting, initial_weights)
    train_from = functools.partial(training_tasks, config)
    val = None
    if config.val_tasks:
        val = _sine_test_tasks(config, config.val_tasks, config.eval_seed + 1)
    history = fit(model, train_from, val, config, run_dir, callbacks)
    return model, history


def _train_and_evaluate_sine(config, workdir, callbacks) -> dict:
    finished = start_run(config, workdir)
    if finished is not None:
        return finished
    initial = build_sine_model(config, "uniform")
    initial_weights = initial.base.get_weights()
    test = _sine_test_tasks(config, config.eval_tasks, config.eval_seed)
    runs, trained, results = {}, {"before training": initial}, {}
    for weighting in WEIGHTINGS:
        run_dir = os.path.join(workdir, f"{config.algo}_{weighting}")
        model, history = _train_sine(
            config, weighting, run_dir, initial_weights, callbacks
        )
        result = evaluation.evaluate_tasks(model, test, metric="mse", verbose=0)
        logging.info("sine %s: %s", weighting, result)
        runs[weighting] = {
            "train_seconds": round(history["wall_seconds"][-1], 1),
            "history": history,
            "result": result.as_dict(),
        }
        trained["after " + _sine_label(config.algo, weighting)] = model
        results[weighting] = result
    before = evaluation.evaluate_tasks(initial, test, metric="mse", verbose=0)
    train_seconds = sum(r["train_seconds"] for r in runs.values())
    difference = evaluation.paired_difference(
        results["agreement"], results["uniform"]
    )
    summary = {
        "dataset": "sine",
        "config": dataclasses.asdict(config),
        **_run_facts(config, workdir, train_seconds),
        "before_training": before.as_dict(),
        "runs": runs,
        "agreement_minus_uniform": dict(zip(("mean", "ci95"), difference)),
    }
    plot_figure1(trained, config, os.path.join(workdir, "figure1.png"))
    plotting.plot_learning_curves(
        {_sine_label(config.algo, w): r["history"] for w, r in runs.items()},
        os.path.join(workdir, "curves.png"),
        metrics=("loss", "val_loss") if config.val_tasks else ("loss",),
        steps_per_epoch=epoch_length(config),
    )
    write_results(summary, workdir)
    return summary


def _sine_label(algo: str, weighting: str) -> str:
    name = "Reptile" if algo == "reptile" else algo.upper()
    return name + (" + gradient agreement" if weighting == "agreement" else "")


def plot_figure1(trained: dict, config: SineConfig, path: str) -> None:
    """One panel per model: true curve, support points, adapted prediction.

    Args:
        trained: `{title: MetaModel}`, in panel order.
        config: gives the test task (`eval_seed`, `figure_task`), the
            support size and the adaptation steps.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    amplitude, phase = sine_task_params(
        config.figure_task + 1, seed=config.eval_seed
    )
    a, p = amplitude[config.figure_task], phase[config.figure_task]
    rng = np.random.default_rng(config.seed)
    sx = rng.uniform(-5.0, 5.0, (config.shots, 1)).astype("float32")
    sy = a * np.sin(sx - p)
    grid = np.linspace(-5.0, 5.0, 200, dtype="float32")[:, None]
    fig, axes = plt.subplots(
        1, len(trained), figsize=(4 * len(trained), 3.2), sharey=True
    )
    for ax, (title, model) in zip(np.atleast_1d(axes), trained.items()):
        # One compiled function per model (`predict` on a new model per
        # task would retrace).
        fast = model.adapt_and_predict(
            sx, sy, grid, steps=config.eval_inner_steps, protocol="moving_stats"
        )
        ax.plot(grid, a * np.sin(grid - p), "k-", label="true")
        ax.plot(grid, np.asarray(model(grid)), "C1:", label="pre-update")
        ax.plot(
            grid,
            np.asarray(fast),
            "C0-",
            label=f"after {config.eval_inner_steps} steps",
        )
        ax.plot(sx, sy, "C3^", label="support")
        ax.set_title(title)
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


_SINE_HEADER = (
    "| model | iterations | meta-batch | steps | query MSE | 95% CI | tasks "
    "| paper |\n|---|---|---|---|---|---|---|---|\n"
)


def _sine_table(summary: dict) -> str:
    c = summary["config"]
    b = summary["before_training"]
    text = _SINE_HEADER + (
        f"| before training | 0 | - | {b['steps']} | {b['mean']:.3f} | "
        f"{b['ci95']:.3f} | {b['num_tasks']} | - |\n"
    )
    for weighting, run in summary["runs"].items():
        r = run["result"]
        text += (
            f"| {_sine_label(c['algo'], weighting)} | {c['iterations']} | "
            f"{c['meta_batch_size']} | {r['steps']} | {r['mean']:.3f} | "
            f"{r['ci95']:.3f} | {r['num_tasks']} | "
            f"{PAPER_MSE.get(weighting, '-')} |\n"
        )
    d = summary["agreement_minus_uniform"]
    return text + (
        f"\nagreement - uniform, paired over the same tasks: "
        f"{d['mean']:+.3f} +- {d['ci95']:.3f}\n"
    )
