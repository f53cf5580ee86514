"""Shared by the dataset loaders: data and cache folders, image sizes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA_ENV = "KERAS_GA_DATA"
CACHE_ENV = "KERAS_GA_CACHE"
DEFAULT_DATA_DIR = Path("~/.keras_ga/data")
DEFAULT_CACHE_DIR = Path("~/.cache/keras_ga")


def data_root(data_dir=None) -> Path:
    """The data folder: `data_dir`, else `$KERAS_GA_DATA`, else the default.

    The folder holds one sub-folder per dataset (`omniglot/`,
    `miniimagenet/`); the loaders also accept the dataset folder itself.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def dataset_dirs(name: str, data_dir=None) -> list[Path]:
    """The folders searched for dataset `name`, in order of preference."""
    root = data_root(data_dir)
    return [root / name, root]


def cache_root(cache_dir=None) -> Path:
    """The cache folder: `cache_dir`, else `$KERAS_GA_CACHE`, else default."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(cache_dir).expanduser()


def check_image_size(image_size) -> tuple[int, int]:
    """`image_size` (an int or a pair) as a `(height, width)` pair."""
    size = image_size
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool)
            for s in size
        )
        or min(size) < 1
    ):
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair "
            f"of positive ints. Received: image_size={image_size!r}."
        )
    return int(size[0]), int(size[1])
