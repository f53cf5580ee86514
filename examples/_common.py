"""What the example scripts share."""

from __future__ import annotations

import os

import keras


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
