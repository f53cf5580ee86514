"""Learning curves of meta-training runs, drawn to PNG with matplotlib.

Reads the logs the examples write (`keras.callbacks.CSVLogger` histories,
one row per epoch of `eval_every` meta-iterations) and draws one panel per
metric (meta-training loss, validation accuracy, ...) against meta-training
iterations, one line per run. matplotlib is imported only when drawing, so
`import keras_ga` does not need it; install it with the `plotting` extra,
`pip install "keras_ga[plotting]"`.

Example:

```python
keras_ga.plotting.plot_learning_curves(
    {"maml uniform": "/tmp/runs/maml_uniform",
     "maml agreement": "/tmp/runs/maml_agreement"},
    "curves.png", metrics=("loss", "val_accuracy"))
```
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

from keras_ga import _optional


def read_history(source) -> dict[str, np.ndarray]:
    """A run's per-epoch history as `{metric: values}`.

    Args:
        source: a `CSVLogger` file, a `results.json` with a `"history"`
            entry, a run folder holding `history.csv`, or a dict of lists
            (a `keras.callbacks.History.history`).

    Returns:
        One float64 array per metric, one value per epoch (the CSV's
        `epoch` column is left out).

    Raises:
        ValueError: when `source` holds no history.

    Example:

    ```python
    from keras_ga import plotting

    history = plotting.read_history(
        {"loss": [1.0, 0.5], "val_accuracy": [0.6, 0.8]})
    print(history["val_accuracy"])  # [0.6 0.8]
    ```
    """
    if isinstance(source, Mapping):
        return {k: np.asarray(v, np.float64) for k, v in source.items()}
    path = str(source)
    if os.path.isdir(path):
        path = os.path.join(path, "history.csv")
    if path.endswith(".json"):
        with open(path) as f:
            data = json.load(f)
        if "history" not in data:
            raise ValueError(
                "`source` must be a JSON file with a 'history' entry. "
                f"Received: source={source!r} with keys {sorted(data)}"
            )
        return read_history(data["history"])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(
            "`source` must hold at least one epoch of history. "
            f"Received: source={source!r} with no rows."
        )
    return {
        key: np.asarray([float(row[key]) for row in rows])
        for key in rows[0]
        if key != "epoch"
    }


def iterations_per_epoch(run_dir) -> int:
    """Meta-steps per history row, from a run's `config.json` (else 1).

    Args:
        run_dir: a run folder, as the examples write it.

    Returns:
        `checkpoint_every` when set, else `eval_every`, at most
        `iterations`; 1 when the folder has no `config.json`.

    Example:

    ```python
    import json
    import tempfile

    from keras_ga import plotting

    run_dir = tempfile.mkdtemp()
    with open(f"{run_dir}/config.json", "w") as f:
        json.dump({"eval_every": 100, "iterations": 1000}, f)
    print(plotting.iterations_per_epoch(run_dir))  # 100
    ```
    """
    path = os.path.join(str(run_dir), "config.json")
    if not os.path.exists(path):
        return 1
    with open(path) as f:
        config = json.load(f)
    every = int(config.get("checkpoint_every") or config.get("eval_every", 1))
    return min(every, int(config.get("iterations", every)))


def plot_learning_curves(
    runs: Mapping[str, object],
    path: str,
    metrics: Sequence[str] = ("loss", "val_accuracy"),
    *,
    steps_per_epoch: Mapping[str, int] | int | None = None,
    title: str | None = None,
    against: str = "iterations",
) -> str:
    """Draws one panel per metric, one line per run, against iterations.

    Epochs without a value (NaN, as `CSVLogger` writes a validation metric
    of an epoch without validation) are left out of a line.

    Args:
        runs: `{label: source}`, each source as in `read_history`.
        path: the PNG file to write.
        metrics: history keys to draw; a run without a key is skipped in
            that panel.
        steps_per_epoch: meta-iterations per history row, per label or for
            all; by default read from each run folder's `config.json`.
        title: a title over the panels.
        against: the x axis: `"iterations"` (meta-training iterations) or
            `"time"` (minutes of meta-training wall-clock time, the
            `wall_seconds` each example logs at the end of an epoch: how
            long a run takes to reach an accuracy on this machine).

    Returns:
        `path`.

    Raises:
        ValueError: when `runs` or `metrics` is empty, no run holds any of
            `metrics`, `against` is not one of its two values, or with
            `against="time"` a run has no `wall_seconds`.
        ImportError: when matplotlib is not installed (the `plotting`
            extra).

    Example:

    ```python
    import tempfile

    from keras_ga import plotting

    runs = {"uniform": {"loss": [1.0, 0.6], "val_accuracy": [0.5, 0.7]},
            "agreement": {"loss": [1.0, 0.5], "val_accuracy": [0.5, 0.8]}}
    plotting.plot_learning_curves(
        runs, f"{tempfile.mkdtemp()}/curves.png", steps_per_epoch=100)
    ```
    """
    if not runs or not metrics:
        raise ValueError(
            "`runs` and `metrics` must not be empty. "
            f"Received: runs={dict(runs)!r}, metrics={list(metrics)!r}"
        )
    if against not in _AGAINST:
        raise ValueError(
            f"`against` must be one of {tuple(_AGAINST)}. "
            f"Received: against={against!r}"
        )
    with _optional.requires_extra("plotting", feature="keras_ga.plotting"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    histories = {label: read_history(src) for label, src in runs.items()}
    if not any(m in h for h in histories.values() for m in metrics):
        raise ValueError(
            f"No run holds any of `metrics`. Received: metrics={list(metrics)}"
            f", available: {sorted({k for h in histories.values() for k in h})}"
        )
    if against == "time":
        for label, history in histories.items():
            if "wall_seconds" not in history:
                raise ValueError(
                    "`against='time'` needs each run's `wall_seconds` "
                    f"history (the examples log it). Received: run {label!r} "
                    f"with {sorted(history)}"
                )
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.5 * len(metrics), 3.3), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics):
        for label, history in histories.items():
            if metric not in history:
                continue
            if against == "time":
                x = history["wall_seconds"] / 60.0
            else:
                step = _steps(steps_per_epoch, label, runs[label])
                x = step * np.arange(1, len(history[metric]) + 1)
            y = history[metric]
            keep = ~np.isnan(y)
            ax.plot(x[keep], y[keep], marker="o", markersize=3, label=label)
        ax.set_xlabel(_AGAINST[against])
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


_AGAINST = {
    "iterations": "meta-training iterations",
    "time": "meta-training wall-clock minutes",
}


def _steps(steps_per_epoch, label, source):
    if isinstance(steps_per_epoch, Mapping):
        return int(steps_per_epoch.get(label, 1))
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        return iterations_per_epoch(source)
    return 1
