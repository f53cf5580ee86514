"""Shared by the dataset loaders: data and cache folders, image sizes, and
the episode pipeline each `*_episodes` helper builds."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_ga import _checks
from keras_ga import _progress

DATA_ENV = "KERAS_GA_DATA"
CACHE_ENV = "KERAS_GA_CACHE"
DEFAULT_DATA_DIR = Path("~/.keras_ga/data")
DEFAULT_CACHE_DIR = Path("~/.cache/keras_ga")
PIPELINES = ("tf.data", "numpy")


def few_shot_episodes(pipeline: str, data, **kwargs):
    """`sampler.few_shot_episodes` (`"tf.data"`), or its NumPy twin
    `numpy_episodes.FewShotEpisodes` (`"numpy"`): the same tasks."""
    _checks.check_one_of("pipeline", pipeline, PIPELINES)
    if pipeline == "numpy":
        from keras_ga import numpy_episodes

        return numpy_episodes.FewShotEpisodes(data, **kwargs)
    from keras_ga import sampler

    return sampler.few_shot_episodes(data, **kwargs)


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


def file_stamp(path: Path) -> tuple:
    """What identifies a file's version cheaply: `(path, size, mtime)`."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def digest(*parts) -> str:
    """A short hex digest of `parts` (their `repr`), for cache file names."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays cached in `path`, or `None` when there is no such file."""
    if not path.is_file():
        return None
    with np.load(path) as cached:
        return {key: cached[key] for key in cached.files}


def write_cache(path: Path, **arrays) -> None:
    """Writes `arrays` to `path` atomically (readers never see a part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


def decode_in_chunks(decode_chunk, total, chunk, num_workers, bar) -> None:
    """Runs `decode_chunk(start)` over `range(0, total, chunk)` in threads.

    The chunks run in a thread pool of `num_workers` (default: up to 8, one
    per CPU); `bar` (a `keras.utils.Progbar` or `None`) counts the items done
    and ends with a line break.
    """
    workers = num_workers or min(8, os.cpu_count() or 1)
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for start in pool.map(decode_chunk, range(0, total, chunk)):
            done = min(start + chunk, total)
            if bar is not None:
                bar.update(done, finalize=False)
    _progress.finish(bar, done)
