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
`tensorboard/`, `checkpoint.keras`, `results.json` and `results.md`.

A sine run (`SineConfig`) meta-trains the MLP twice from the same initial
weights on the same tasks, with uniform and with gradient agreement
weighting, and meta-tests both on the same test tasks. It writes
`results.json`, `results.md`, `figure1.png` (the paper's Figure 1),
`curves.png`, and per run (`<algo>_<weighting>/`) `history.csv`,
`tensorboard/` and `checkpoint.keras`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
from absl import logging

import keras_ga
from examples.configs import WEIGHTINGS
from examples.configs import FewShotConfig
from examples.configs import SineConfig
from keras_ga import evaluation
from keras_ga import models
from keras_ga import plotting
from keras_ga.datasets import miniimagenet_episodes
from keras_ga.datasets import omniglot_episodes
from keras_ga.datasets import sine_task_params
from keras_ga.datasets import sine_tasks


def train_and_evaluate(config: FewShotConfig | SineConfig, workdir: str):
    """Meta-trains and meta-tests `config`, writing its files to `workdir`.

    Args:
        config: a `FewShotConfig` (one run on Omniglot or miniImageNet) or a
            `SineConfig` (Reptile against gradient agreement on sine tasks).
        workdir: the folder of the run's files (created if needed).

    Returns:
        The summary dict also written to `workdir/results.json`.

    Raises:
        TypeError: if `config` is neither config class.
    """
    if isinstance(config, FewShotConfig):
        return _train_and_evaluate_few_shot(config, workdir)
    if isinstance(config, SineConfig):
        return _train_and_evaluate_sine(config, workdir)
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
    """Meta-steps per Keras epoch: one validation every `eval_every`."""
    return min(config.eval_every, config.iterations)


def fit(model, train, val, config, run_dir: str) -> dict:
    """Trains `config.iterations` meta-batches in epochs of `epoch_length`.

    Validates on `val` (may be None) after each epoch and writes the run's
    callbacks' files to `run_dir`; returns the History dict.
    """
    every = epoch_length(config)
    history = model.fit(
        train,
        steps_per_epoch=every,
        epochs=max(1, config.iterations // every),
        validation_data=val,
        callbacks=_run_callbacks(run_dir),
        verbose=2,
        shuffle=False,
    )
    return history.history


def _run_callbacks(run_dir: str) -> list:
    """History CSV, TensorBoard logs and a `.keras` checkpoint in `run_dir`."""
    return [
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv")),
        keras.callbacks.TensorBoard(
            os.path.join(run_dir, "tensorboard"),
            write_graph=False,
            profile_batch=0,
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoint.keras")
        ),
    ]


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

    Transductive first, then, with `config.non_transductive`, with
    BatchNorm's moving statistics; each task adapts with
    `config.eval_inner_steps` steps.
    """
    test = fixed_tasks(config, "test", config.eval_tasks, config.eval_seed)
    modes = (True, False) if config.non_transductive else (True,)
    results = [
        evaluation.evaluate_tasks(
            model,
            test,
            steps=config.eval_inner_steps,
            transductive=mode,
            verbose=0,
        )
        for mode in modes
    ]
    for result in results:
        logging.info("%s %s", config.dataset, result)
    return results


def _train_and_evaluate_few_shot(config: FewShotConfig, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    train = episodes(
        config,
        "train",
        queries=config.queries,
        meta_batch_size=config.meta_batch_size,
        seed=config.seed,
    )
    val = None
    if config.val_tasks:
        val_split = _DATASETS[config.dataset]["val_split"]
        val = fixed_tasks(
            config, val_split, config.val_tasks, config.eval_seed + 1
        )
    model = build_few_shot_model(config)
    start = time.time()
    history = fit(model, train, val, config, workdir)
    train_time = time.time() - start
    start = time.time()
    results = meta_test(model, config)
    summary = {
        "dataset": config.dataset,
        "config": dataclasses.asdict(config),
        "train_seconds": round(train_time, 1),
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
        mode = "transductive" if r["transductive"] else "non-transductive"
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


def _train_sine(config, weighting, run_dir, initial_weights):
    """Meta-trains one weighting; returns the model and the history."""
    os.makedirs(run_dir, exist_ok=True)
    model = build_sine_model(config, weighting, initial_weights)
    train = sine_tasks(
        shots=config.shots,
        queries=config.queries,
        meta_batch_size=config.meta_batch_size,
        seed=config.seed,
    )
    val = None
    if config.val_tasks:
        val = _sine_test_tasks(config, config.val_tasks, config.eval_seed + 1)
    return model, fit(model, train, val, config, run_dir)


def _train_and_evaluate_sine(config: SineConfig, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    initial = build_sine_model(config, "uniform")
    initial_weights = initial.base.get_weights()
    test = _sine_test_tasks(config, config.eval_tasks, config.eval_seed)
    runs, trained, results = {}, {"before training": initial}, {}
    for weighting in WEIGHTINGS:
        start = time.time()
        run_dir = os.path.join(workdir, f"{config.algo}_{weighting}")
        model, history = _train_sine(
            config, weighting, run_dir, initial_weights
        )
        seconds = time.time() - start
        result = evaluation.evaluate_tasks(model, test, metric="mse", verbose=0)
        logging.info("sine %s: %s", weighting, result)
        runs[weighting] = {
            "train_seconds": round(seconds, 1),
            "history": history,
            "result": result.as_dict(),
        }
        trained["after " + _sine_label(config.algo, weighting)] = model
        results[weighting] = result
    before = evaluation.evaluate_tasks(initial, test, metric="mse", verbose=0)
    difference = evaluation.paired_difference(
        results["agreement"], results["uniform"]
    )
    summary = {
        "dataset": "sine",
        "config": dataclasses.asdict(config),
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
