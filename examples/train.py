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

import collections
import csv
import dataclasses
import functools
import json
import math
import os
import shlex
import time
from collections.abc import Sequence

import keras
import numpy as np
from absl import logging

import keras_ga
from examples import _machine
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
from keras_ga import sampler
from keras_ga._optional import tensorflow as tf
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
    callbacks = [*annealing_callbacks(config), *callbacks]
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


def annealing_callbacks(config) -> list:
    """MAML++'s annealing callbacks that `config` asks for (epochs > 0)."""
    out = []
    msl = getattr(config, "multi_step_loss_epochs", 0)
    if msl:
        out.append(keras_ga.callbacks.MultiStepLossAnnealing(msl))
    first_order = getattr(config, "first_order_epochs", 0)
    if first_order:
        out.append(keras_ga.callbacks.DerivativeOrderAnnealing(first_order))
    return out


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
    gpus = [
        tf.config.experimental.get_device_details(gpu).get(
            "device_name", gpu.name
        )
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    return ", ".join([_machine.cpu(), *gpus])


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


def episodes(config: FewShotConfig, split: str, shots=None, **kwargs):
    """The episode dataset of `split` of `config.dataset`.

    Args:
        config: gives the dataset, Omniglot's split protocol and whether
            tasks stay within one alphabet, ways, shots, image size and
            data folder.
        split: `"train"`, `"val"` or `"test"`.
        shots: support examples per class; default `config.shots`.
        **kwargs: `queries`, `meta_batch_size`, `seed`, `num_tasks`, as in
            `keras_ga.datasets.omniglot_episodes`.
    """
    if config.dataset == "omniglot":
        kwargs["protocol"] = config.protocol
        kwargs["within_alphabet"] = config.within_alphabet
    return _DATASETS[config.dataset]["episodes"](
        split,
        ways=config.ways,
        shots=shots or config.shots,
        data_dir=config.data_dir,
        image_size=config.image_size,
        **kwargs,
    )


def train_shots(config: FewShotConfig | SineConfig) -> int:
    """Support examples (per class) of `config`'s training tasks."""
    return config.train_shots or config.shots


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
        return sine_tasks(shots=train_shots(config), **kwargs)
    return episodes(config, "train", shots=train_shots(config), **kwargs)


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
    """The compiled MetaModel of `config` on conv4, seeded by `config.seed`.

    With `downsample="stride"` conv4 flattens its last feature map (the
    Reptile reference's network); otherwise its head is the dataset's
    (global average pooling on Omniglot, as in MAML's network).
    """
    keras.utils.set_random_seed(config.seed)
    channels = _DATASETS[config.dataset]["channels"]
    strided = config.downsample == "stride"
    base = models.conv4(
        (config.image_size, config.image_size, channels),
        config.ways,
        config.filters,
        global_pool=_DATASETS[config.dataset]["global_pool"] and not strided,
        bn_momentum=config.bn_momentum,
        downsample=config.downsample,
        batch_norm_steps=(
            None
            if config.per_step_batch_norm == "none"
            else max(config.inner_steps, config.eval_inner_steps)
        ),
        per_step_batch_norm_weights=(
            config.per_step_batch_norm == "statistics_and_weights"
        ),
    )
    model = keras_ga.MetaModel(
        base,
        algo=config.algo,
        weighting=config.weighting,
        inner_steps=config.inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        inner_optimizer=inner_optimizer(config),
        eval_inner_steps=config.eval_inner_steps,
        # Unset: every step takes the whole support set (with BatchNorm, a
        # sub-batch of one example would normalise to zero).
        inner_batch_size=(
            config.inner_batch_size or config.ways * train_shots(config)
        ),
        eval_inner_batch_size=config.eval_inner_batch_size,
        pre_adaptation_metrics=False,
        learn_inner_rates=(
            None
            if config.learn_inner_rates == "none"
            else config.learn_inner_rates
        ),
        adapt_layers=[n for n in config.adapt_layers.split(",") if n] or None,
        multi_step_loss=config.multi_step_loss_epochs > 0,
    )
    model.compile(
        optimizer=outer_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def inner_optimizer(config: FewShotConfig):
    """`config`'s inner-loop optimizer, for `MetaModel(inner_optimizer=)`."""
    if config.inner_optimizer == "sgd":
        return "sgd"
    return keras_ga.inner_optimizers.Adam(
        beta_1=config.inner_beta_1, moments=config.inner_moments
    )


def outer_optimizer(
    config: FewShotConfig | SineConfig,
) -> keras.optimizers.Optimizer:
    """`config`'s outer optimizer, with its learning-rate schedule.

    `outer_schedule="linear"` anneals the learning rate linearly from
    `outer_learning_rate` at the first meta-step to 0 at the last (the
    Reptile reference's meta-step with `--meta-step-final 0`), a Keras
    `PolynomialDecay` of power 1 over `iterations` steps;
    `outer_schedule="cosine"` is a Keras `CosineDecay` to
    `outer_min_learning_rate` (MAML++'s annealing).
    """
    rate = config.outer_learning_rate
    if config.outer_schedule == "linear":
        rate = keras.optimizers.schedules.PolynomialDecay(
            rate, decay_steps=config.iterations, end_learning_rate=0.0
        )
    elif config.outer_schedule == "cosine":
        final = getattr(config, "outer_min_learning_rate", 0.0)
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=config.iterations, alpha=final / rate
        )
    if getattr(config, "outer_optimizer", "adam") == "sgd":
        return keras.optimizers.SGD(rate)
    return keras.optimizers.Adam(rate)


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
    probe = None
    if config.corrupt_fraction:
        probe = WeightProbe(config, os.path.join(workdir, "weights.json"))
        callbacks = [probe, *callbacks]
    history = fit(model, train_from, val, config, workdir, callbacks)
    start = time.time()
    results = meta_test(model, config)
    summary = {
        "dataset": config.dataset,
        "config": dataclasses.asdict(config),
        **_run_facts(config, workdir, history["wall_seconds"][-1]),
        "eval_seconds": round(time.time() - start, 1),
        "history": history,
        # Each test task's accuracy too: runs on the same test tasks (the
        # same eval_seed) compare task by task (keras_ga.paired_difference).
        "results": [
            {**r.as_dict(), "per_task": r.per_task.tolist()} for r in results
        ],
    }
    if probe is not None:
        summary["corruption_weights"] = corruption_summary(probe.result())
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
    """The compiled MetaModel of `config` with `weighting` on the MLP.

    Its training logs the weight diagnostics against ||g_i||
    (`weight_diagnostics="update_norm"`: `weight_corr`, `weight_std`,
    `weight_max`, besides `weight_min` and `weight_neg_frac`).
    """
    keras.utils.set_random_seed(config.seed)
    base = models.mlp(
        (1,), 1, (config.hidden, config.hidden), activation=config.activation
    )
    if initial_weights is not None:
        base.set_weights(initial_weights)
    model = keras_ga.MetaModel(
        base,
        algo=config.algo,
        weighting=weighting,
        inner_steps=config.inner_steps,
        eval_inner_steps=config.eval_inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        inner_batch_size=config.inner_batch_size or train_shots(config),
        # Every test step sees the 10 support points (paper, Figure 1).
        eval_inner_batch_size=config.shots,
        pre_adaptation_metrics=False,
        weight_diagnostics="update_norm",
    )
    model.compile(
        optimizer=outer_optimizer(config),
        loss="mse",
        jit_compile=True if config.xla else "auto",
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


# Training-distribution tasks whose agreement weights `WeightProbe` records:
# this many meta-batches of the training meta-batch size.
_PROBE_BATCHES = 20


def probe_tasks(config: FewShotConfig | SineConfig, num_batches: int):
    """The fixed meta-batches of `WeightProbe`, each with a per-task feature.

    `num_batches` meta-batches of training-like tasks (the training
    meta-batch size and shots), seeded by `config.eval_seed + 2`: elements
    `(episode, features)`, `features` a dict of per-task tensors. Sine:
    uncorrupted tasks and their `amplitude`. Few-shot: training-split
    tasks corrupted as the training stream is (`config.corrupt_fraction`,
    `config.corruption`) and whether each is (`corrupted`, 1.0 or 0.0;
    `keras_ga.sampler.corrupted_tasks`).
    """
    seed = config.eval_seed + 2
    num_tasks = num_batches * config.meta_batch_size
    if isinstance(config, SineConfig):
        tasks = sine_tasks(
            shots=train_shots(config),
            queries=config.queries,
            meta_batch_size=config.meta_batch_size,
            seed=seed,
            num_tasks=num_tasks,
            return_params=True,
        )
        return tasks.map(lambda e, p: (e, {"amplitude": p["amplitude"]}))
    tasks = episodes(
        config,
        "train",
        shots=train_shots(config),
        queries=config.queries,
        meta_batch_size=config.meta_batch_size,
        seed=seed,
        num_tasks=num_tasks,
        corrupt_fraction=config.corrupt_fraction,
        corruption=config.corruption,
    )
    corrupted = sampler.corrupted_tasks(
        seed, num_tasks, config.corrupt_fraction
    ).astype("float32")
    flags = tf.data.Dataset.from_tensor_slices(
        corrupted.reshape(num_batches, config.meta_batch_size)
    )
    return tf.data.Dataset.zip(tasks, flags).map(
        lambda e, c: (e, {"corrupted": c})
    )


class WeightProbe(keras.callbacks.Callback):
    """Records the Eq. 13 weights of fixed training-like tasks over training.

    Before training and after each epoch, runs the inner loop of the fixed
    meta-batches of `probe_tasks` from the current weights and computes
    the gradient agreement weights within each meta-batch, as a training
    step would (whatever the run's own weighting). Each record is
    `{"epoch", "weight", "update_norm", <feature>}` with one list entry
    per task (`epoch` -1: before training); the feature is `amplitude`
    (sine) or `corrupted` (few-shot). The records are rewritten to `path`
    (JSON) after each epoch; a resumed run keeps those of the epochs
    before its backup.
    """

    def __init__(
        self,
        config: FewShotConfig | SineConfig,
        path: str,
        num_batches: int = _PROBE_BATCHES,
    ):
        super().__init__()
        self.path = path
        self.tasks = probe_tasks(config, num_batches)
        self.weighting = keras_ga.AgreementWeighting()
        self.records = None
        self._probe = None

    def on_train_begin(self, logs=None):
        self.records = None

    def result(self) -> list[dict]:
        """The records of the whole run, after `fit`.

        Those of this `fit`, or, when it trained no epoch (a run resumed
        after its last epoch), those its earlier pieces wrote to `path`.
        """
        if self.records is not None:
            return self.records
        with open(self.path) as f:
            return json.load(f)

    def on_epoch_begin(self, epoch, logs=None):
        if self.records is not None:
            return
        # The first epoch of this `fit`: the backup's, after a resume.
        saved = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                saved = json.load(f)
        self.records = [r for r in saved if r["epoch"] < epoch]
        if epoch == 0:
            self.records = [self._record(-1)]
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        self.records.append(self._record(epoch))
        self._write()

    def _write(self):
        partial = f"{self.path}.{os.getpid()}.tmp"
        with open(partial, "w") as f:
            json.dump(self.records, f)
        os.replace(partial, self.path)

    def _record(self, epoch) -> dict:
        if self._probe is None:
            self._probe = tf.function(self._weights, autograph=False)
        record = collections.defaultdict(list, epoch=epoch)
        for episode, features in self.tasks:
            weights, norms = self._probe(episode)
            for name, value in features.items():
                record[name] += value.numpy().tolist()
            record["weight"] += weights.numpy().tolist()
            record["update_norm"] += norms.numpy().tolist()
        return dict(record)

    def _weights(self, episode):
        updates = self.model.run_tasks(episode, training=True).updates
        norms = keras_ga.agreement.update_norms(updates)
        return self.weighting(updates), norms


def _train_sine(config, weighting, run_dir, initial_weights, callbacks):
    """Meta-trains one weighting; returns the model, history and probe."""
    model = build_sine_model(config, weighting, initial_weights)
    train_from = functools.partial(training_tasks, config)
    val = None
    if config.val_tasks:
        val = _sine_test_tasks(config, config.val_tasks, config.eval_seed + 1)
    probe = WeightProbe(config, os.path.join(run_dir, "weights.json"))
    history = fit(model, train_from, val, config, run_dir, [probe, *callbacks])
    return model, history, probe.result()


def sine_steps(config: SineConfig) -> tuple[int, ...]:
    """The inner-step counts of the sine meta-test, in order."""
    steps = (config.eval_inner_steps, config.long_eval_inner_steps)
    return tuple(dict.fromkeys(s for s in steps if s))


def _train_and_evaluate_sine(config, workdir, callbacks) -> dict:
    finished = start_run(config, workdir)
    if finished is not None:
        return finished
    initial = build_sine_model(config, "uniform")
    initial_weights = initial.base.get_weights()
    test = _sine_test_tasks(config, config.eval_tasks, config.eval_seed)
    runs, trained, probes = {}, {"before training": initial}, {}
    for weighting in WEIGHTINGS:
        run_dir = os.path.join(workdir, f"{config.algo}_{weighting}")
        model, history, probes[weighting] = _train_sine(
            config, weighting, run_dir, initial_weights, callbacks
        )
        runs[weighting] = {
            "train_seconds": round(history["wall_seconds"][-1], 1),
            "history": history,
        }
        trained[weighting] = model
    evaluations, differences = [], []
    for steps in sine_steps(config):
        results = {
            name: evaluation.evaluate_tasks(
                model, test, metric="mse", steps=steps, verbose=0
            )
            for name, model in trained.items()
        }
        for name, result in results.items():
            logging.info("sine %s, %d steps: %s", name, steps, result)
            evaluations.append({"model": name, **result.as_dict()})
        mean, ci95 = evaluation.paired_difference(
            results["agreement"], results["uniform"]
        )
        differences.append({"steps": steps, "mean": mean, "ci95": ci95})
        if steps == config.eval_inner_steps:
            before = results["before training"]
            for weighting in WEIGHTINGS:
                runs[weighting]["result"] = results[weighting].as_dict()
    train_seconds = sum(r["train_seconds"] for r in runs.values())
    summary = {
        "dataset": "sine",
        "config": dataclasses.asdict(config),
        **_run_facts(config, workdir, train_seconds),
        "before_training": before.as_dict(),
        "runs": runs,
        "evaluations": evaluations,
        "paired_differences": differences,
        "agreement_minus_uniform": {
            k: differences[0][k] for k in ("mean", "ci95")
        },
        "agreement_weights": weight_summary(probes["agreement"]),
    }
    labels = {w: _sine_label(config.algo, w) for w in WEIGHTINGS}
    plot_figure1(
        {"before training": initial}
        | {"after " + labels[w]: trained[w] for w in WEIGHTINGS},
        config,
        os.path.join(workdir, "figure1.png"),
    )
    plotting.plot_learning_curves(
        {labels[w]: r["history"] for w, r in runs.items()},
        os.path.join(workdir, "curves.png"),
        metrics=("loss", "val_loss") if config.val_tasks else ("loss",),
        steps_per_epoch=epoch_length(config),
    )
    plot_weights(
        probes["agreement"],
        runs["agreement"]["history"],
        config,
        os.path.join(workdir, "weights.png"),
    )
    write_results(summary, workdir)
    return summary


def weight_summary(records: list[dict]) -> list[dict]:
    """Per probe record: the weights' relation to amplitude and ||g_i||.

    For each record of a `WeightProbe`: the epoch, the fraction of
    negative weights, the correlation of the weights with the amplitude
    and with ||g_i||, the correlation of ||g_i|| with the amplitude, the
    mean weight of the lowest- and of the highest-amplitude fifth of the
    tasks, and the ratio of their mean absolute weights (how much more
    the outer step listens to the largest waves, in either direction).
    """
    out = []
    for r in records:
        amplitude = np.asarray(r["amplitude"])
        weight = np.asarray(r["weight"])
        norm = np.asarray(r["update_norm"])
        order = np.argsort(amplitude)
        fifth = max(1, len(order) // 5)
        low, high = weight[order[:fifth]], weight[order[-fifth:]]
        out.append(
            {
                "epoch": r["epoch"],
                "negative_fraction": float(np.mean(weight < 0)),
                "corr_weight_amplitude": _corr(weight, amplitude),
                "corr_weight_update_norm": _corr(weight, norm),
                "corr_update_norm_amplitude": _corr(norm, amplitude),
                "mean_weight_low_fifth": float(np.mean(low)),
                "mean_weight_high_fifth": float(np.mean(high)),
                "high_to_low_amplitude_abs_weight": float(
                    np.mean(np.abs(high)) / np.mean(np.abs(low))
                ),
            }
        )
    return out


def corruption_summary(records: list[dict]) -> list[dict]:
    """Per few-shot probe record: how much weight the corrupted tasks get.

    For each record of a `WeightProbe` on corrupted tasks: the epoch, the
    fraction of corrupted probe tasks (their share under uniform
    weighting), the corrupted tasks' share of the summed Eq. 13 weights,
    the mean weight of corrupted and of clean tasks, and the fraction of
    negative weights among each.
    """
    out = []
    for r in records:
        weight = np.asarray(r["weight"])
        corrupted = np.asarray(r["corrupted"]) > 0.5
        clean = ~corrupted

        def mean(values):
            return float(np.mean(values)) if values.size else None

        out.append(
            {
                "epoch": r["epoch"],
                "corrupted_fraction": float(np.mean(corrupted)),
                "corrupted_weight_share": float(
                    weight[corrupted].sum() / weight.sum()
                ),
                "mean_weight_corrupted": mean(weight[corrupted]),
                "mean_weight_clean": mean(weight[clean]),
                "negative_fraction_corrupted": mean(weight[corrupted] < 0),
                "negative_fraction_clean": mean(weight[clean] < 0),
            }
        )
    return out


def _corr(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def plot_weights(records, history, config: SineConfig, path: str) -> None:
    """The agreement weights against task amplitude, and over training.

    Left: each probe task's weight against its amplitude, before training
    and after the last epoch. Right: per epoch, the fraction of negative
    weights in training meta-batches and the correlation of the weights
    with ||g_i|| (`weight_neg_frac`, `weight_corr` of the history).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for record, style in ((records[0], "C7."), (records[-1], "C0.")):
        when = "before training" if record["epoch"] < 0 else "after training"
        left.plot(record["amplitude"], record["weight"], style, label=when)
    left.axhline(0.0, color="k", lw=0.5)
    left.axhline(
        1.0 / config.meta_batch_size, color="C3", ls="--", label="uniform"
    )
    left.set_xlabel("task amplitude")
    left.set_ylabel("Eq. 13 weight")
    left.legend(fontsize=8)
    every = epoch_length(config)
    steps = [(i + 1) * every for i in range(len(history["loss"]))]
    for key, label in (
        ("weight_neg_frac", "negative-weight fraction"),
        ("weight_corr", "corr(weight, ||g_i||)"),
    ):
        if key in history:
            right.plot(steps, history[key], label=label)
    right.set_xlabel("meta-iteration")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
    "| model | iterations | meta-batch | test steps | query MSE | 95% CI "
    "| tasks | paper (5 steps) |\n|---|---|---|---|---|---|---|---|\n"
)


def _sine_table(summary: dict) -> str:
    c = summary["config"]
    labels = {w: _sine_label(c["algo"], w) for w in WEIGHTINGS}
    text = _SINE_HEADER
    for r in summary.get("evaluations", []):
        paper = PAPER_MSE if r["steps"] == c["eval_inner_steps"] else {}
        name = labels.get(r["model"], r["model"])
        trained = r["model"] in labels
        text += (
            f"| {name} | {c['iterations'] if trained else 0} | "
            f"{c['meta_batch_size'] if trained else '-'} | {r['steps']} | "
            f"{r['mean']:.3f} | {r['ci95']:.3f} | {r['num_tasks']} | "
            f"{paper.get(r['model'], '-')} |\n"
        )
    text += "\nagreement - uniform, paired over the same tasks:\n"
    for d in summary.get("paired_differences", []):
        text += (
            f"- {d['steps']} test steps: {d['mean']:+.3f} +- {d['ci95']:.3f}\n"
        )
    weights = summary.get("agreement_weights")
    if weights:
        w = weights[-1]
        text += (
            "\nagreement weights after training (probe tasks): "
            f"{100 * w['negative_fraction']:.0f}% negative, "
            f"corr(weight, amplitude) {w['corr_weight_amplitude']:.2f}, "
            f"corr(||g_i||, amplitude) {w['corr_update_norm_amplitude']:.2f}, "
            "mean |weight| of the highest- over the lowest-amplitude fifth "
            f"{w['high_to_low_amplitude_abs_weight']:.1f}x\n"
        )
    return text
