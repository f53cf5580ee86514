"""What the example scripts share."""

from __future__ import annotations

import os

import keras
from absl import flags
from absl import logging

import keras_ga


def define_thread_flag(flag_values=flags.FLAGS) -> None:
    """Defines `--set_cpu_threads` in `flag_values`."""
    flags.DEFINE_bool(
        "set_cpu_threads",
        True,
        "Give TensorFlow one thread per op and as many ops at once as there "
        "are CPUs (keras_ga.set_cpu_threads): faster for task-parallel "
        "meta-training on a CPU. False keeps TensorFlow's default split.",
        flag_values=flag_values,
    )


def configure_threads(flag_values=flags.FLAGS) -> None:
    """Applies `--set_cpu_threads`; call first in an example's `main`.

    Where TensorFlow's runtime already runs (a script's `main` called from
    a test or a notebook), its thread split stays and a warning says so.
    """
    if not flag_values.set_cpu_threads:
        return
    try:
        keras_ga.set_cpu_threads()
    except RuntimeError as error:
        logging.warning("%s. Keeping TensorFlow's thread split.", error)


def run_callbacks(run_dir: str) -> list:
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


def epoch_length(config) -> int:
    """Meta-iterations per Keras epoch: one validation every `eval_every`."""
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
        callbacks=run_callbacks(run_dir),
        verbose=2,
        shuffle=False,
    )
    return history.history
