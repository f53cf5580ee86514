"""miniImageNet (Vinyals et al. 2016) with the split of Ravi & Larochelle.

Two on-disk formats are read, from the folder `data_dir/miniimagenet/` (or
`data_dir` itself), where `data_dir` defaults to `$KERAS_GA_DATA`, else
`~/.keras_ga/data`:

- the pickle caches `mini-imagenet-cache-{train,val,test}.pkl`: dicts with
  `image_data`, uint8 `[M, 84, 84, 3]`, and `class_dict`, mapping each class
  to the list of its row indices in `image_data`. Used when present.
- the split files `train.csv`, `val.csv`, `test.csv` (header
  `filename,label`, 64/16/20 classes of 600 images) with the images in
  `images/<filename>`, decoded with PIL, converted to RGB and resized with a
  Lanczos filter to `image_size` (84x84 by default).

Images stay uint8 in [0, 255] (the training split is 813 MB so; four times
that as float32); the episode sampler scales them to float32 [0, 1].

Decoding the images of a split file shows a `keras.utils.Progbar` and
caches the result as one `.npz` file in `cache_dir`, else
`$KERAS_GA_CACHE`, else `~/.cache/keras_ga`. The cache is keyed on the
source: the split file's path, size and modification time, and the size
and modification time of every image it lists, with the image size; any
other copy, or a changed file, is decoded afresh. The pickle caches are
read directly, not cached again.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
    Ravi and Larochelle, "Optimization as a Model for Few-Shot Learning",
    ICLR 2017.
"""

from __future__ import annotations

import csv
import pickle
import stat
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image
from PIL import UnidentifiedImageError

from keras_ga import _checks
from keras_ga import _progress
from keras_ga import class_major
from keras_ga.datasets import _common

SPLITS = ("train", "val", "test")
CSV_HEADER = ["filename", "label"]
CACHE_VERSION = 1  # Bump when decoding changes, to ignore stale caches.


def load_miniimagenet(
    split: str,
    *,
    data_dir=None,
    image_size=84,
    num_workers: int | None = None,
    cache_dir=None,
    verbose="auto",
) -> class_major.ClassMajor:
    """Loads one split of miniImageNet as a class-major array.

    Args:
        split: `"train"`, `"val"` or `"test"`.
        data_dir: folder holding `miniimagenet/` (or the files themselves).
        image_size: int or `(height, width)` the CSV images are resized to.
        num_workers: threads decoding images.
        cache_dir: folder of the decoded-image cache (see the module
            docstring).
        verbose: progress of a decode: 0 (none), 1 (a bar updated in
            place), 2 (one line when done) or `"auto"` (1 on a terminal,
            else 2).

    Returns:
        A `keras_ga.class_major.ClassMajor` with uint8 images
        `[classes, examples, height, width, 3]`, the example count of each
        class and the class names (WordNet ids), sorted.

    Raises:
        ValueError: for an unknown `split`, a bad CSV header or pickle, or an
            image that cannot be decoded.
        FileNotFoundError: when neither format is found, the `images/`
            folder is missing, or a CSV row names a missing image.

    Example:

    Needs the miniImageNet split files and images in `data_dir` or
    `$KERAS_GA_DATA`:

    ```python
    test = keras_ga.datasets.load_miniimagenet("test")
    print(test.images.shape)  # (20, 600, 84, 84, 3), uint8
    ```
    """
    _checks.check_one_of("split", split, SPLITS)
    size = _common.check_image_size(image_size)
    _progress.resolve_verbose(verbose)
    decode = dict(size=size, num_workers=num_workers, verbose=verbose)
    folders = _common.dataset_dirs("miniimagenet", data_dir)
    for folder in folders:
        pickled = folder / f"mini-imagenet-cache-{split}.pkl"
        if pickled.is_file():
            return _load_pickle(pickled, **decode)
    for folder in folders:
        if (folder / f"{split}.csv").is_file():
            return _load_csv(folder / f"{split}.csv", cache_dir, **decode)
    raise FileNotFoundError(
        f"miniImageNet split {split!r} not found. Looked for "
        f"mini-imagenet-cache-{split}.pkl or {split}.csv (with images/) in "
        f"{[str(f) for f in folders]} (from `data_dir`, else "
        f"${_common.DATA_ENV}, else {_common.DEFAULT_DATA_DIR}). Put the "
        "Ravi & Larochelle split files and the images there."
    )


def miniimagenet_episodes(
    split: str,
    *,
    ways: int,
    shots: int,
    queries: int,
    meta_batch_size: int,
    seed: int,
    num_tasks: int | None = None,
    data_dir=None,
    image_size=84,
    shuffle_examples: bool = True,
    transform=None,
    cache_dir=None,
    verbose="auto",
    start=0,
    corrupt_fraction: float = 0.0,
    corruption: str = "shuffle",
    pipeline: str = "tf.data",
):
    """Episode dataset of one miniImageNet split, in one call.

    Args:
        split: `"train"`, `"val"` or `"test"`.
        ways: as in `keras_ga.sampler.few_shot_episodes`.
        shots: as in `keras_ga.sampler.few_shot_episodes`.
        queries: as in `keras_ga.sampler.few_shot_episodes`.
        meta_batch_size: as in `keras_ga.sampler.few_shot_episodes`.
        seed: as in `keras_ga.sampler.few_shot_episodes`.
        num_tasks: as in `keras_ga.sampler.few_shot_episodes`.
        shuffle_examples: as in `keras_ga.sampler.few_shot_episodes`.
        transform: as in `keras_ga.sampler.few_shot_episodes`.
        start: as in `keras_ga.sampler.few_shot_episodes`.
        corrupt_fraction: as in `keras_ga.sampler.few_shot_episodes`.
        corruption: as in `keras_ga.sampler.few_shot_episodes`.
        pipeline: `"tf.data"` (a `tf.data.Dataset`) or `"numpy"` (a
            `keras_ga.numpy_episodes.FewShotEpisodes`, a
            `keras.utils.PyDataset` of the same tasks; `start` must then be
            an int).
        data_dir: as in `load_miniimagenet`.
        image_size: as in `load_miniimagenet`.
        cache_dir: as in `load_miniimagenet`.
        verbose: as in `load_miniimagenet`.

    Returns:
        A `tf.data.Dataset` (or, with `pipeline="numpy"`, a
        `FewShotEpisodes`) of episode dicts with images
        `[meta_batch_size, examples, height, width, 3]` float32 in [0, 1].

    Example:

    ```python
    train = keras_ga.datasets.miniimagenet_episodes(
        "train", ways=5, shots=1, queries=15, meta_batch_size=4, seed=0)
    test = keras_ga.datasets.miniimagenet_episodes(
        "test", ways=5, shots=1, queries=15, meta_batch_size=4, seed=1,
        num_tasks=600)
    ```
    """
    return _common.few_shot_episodes(
        pipeline,
        load_miniimagenet(
            split,
            data_dir=data_dir,
            image_size=image_size,
            cache_dir=cache_dir,
            verbose=verbose,
        ),
        ways=ways,
        shots=shots,
        queries=queries,
        meta_batch_size=meta_batch_size,
        seed=seed,
        num_tasks=num_tasks,
        shuffle_examples=shuffle_examples,
        transform=transform,
        start=start,
        corrupt_fraction=corrupt_fraction,
        corruption=corruption,
    )


def _read_rows(csv_path: Path) -> list[tuple[int, str, str]]:
    """`(line number, filename, label)` of each row of a split file."""
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != CSV_HEADER:
            raise ValueError(
                f"{csv_path} must start with the header "
                f"{','.join(CSV_HEADER)}. Received: header={header!r}."
            )
        rows = [(reader.line_num, *row) for row in reader if row]
    for line, *row in rows:
        if len(row) != 2:
            raise ValueError(
                f"{csv_path} row {line} must have 2 fields, filename and "
                f"label. Received: {row!r}."
            )
    return rows


def _load_csv(csv_path: Path, cache_dir, **decode) -> class_major.ClassMajor:
    rows = _read_rows(csv_path)
    files, stamps = _listed_images(csv_path, rows)
    path = _cache_file(csv_path, stamps, decode["size"], cache_dir)
    cached = _common.read_cache(path)
    if cached is not None:
        return class_major.ClassMajor(**cached)
    logging.info("Decoding %s into the cache %s.", csv_path, path)
    data = _grouped([label for *_, label in rows], files, **decode)
    _common.write_cache(path, **data._asdict())
    return data


def _listed_images(csv_path: Path, rows):
    """The image files of `rows` and their `(size, mtime)` stamps."""
    images_dir = csv_path.parent / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(
            f"The miniImageNet images folder {images_dir} does not exist; "
            f"{csv_path} lists {len(rows)} images expected in it."
        )
    files = [images_dir / filename for _, filename, _ in rows]
    stamps = [
        _image_stamp(csv_path, row, file)
        for row, file in zip(rows, files, strict=True)
    ]
    return files, stamps


def _cache_file(csv_path: Path, stamps, size, cache_dir) -> Path:
    """The cache of a split file's decode, named for its source and size."""
    key = _common.digest(_common.file_stamp(csv_path), stamps, size)
    name = (
        f"miniimagenet_v{CACHE_VERSION}_{csv_path.stem}_{size[0]}x{size[1]}_"
        f"{key}.npz"
    )
    return _common.cache_root(cache_dir) / name


def _image_stamp(csv_path, row, file):
    """`(size, mtime)` of a listed image; an error when it is missing."""
    line, filename, _ = row
    try:
        status = file.stat()
    except FileNotFoundError:
        status = None
    if status is None or not stat.S_ISREG(status.st_mode):
        raise FileNotFoundError(
            f"Image {file} listed in {csv_path} row {line} "
            f"(filename={filename}) does not exist."
        )
    return status.st_size, status.st_mtime_ns


def _load_pickle(path: Path, size, **decode) -> class_major.ClassMajor:
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(
        data
    ):
        raise ValueError(
            f"{path} must hold a dict with keys 'image_data' and "
            f"'class_dict'. Received: {type(data).__name__}"
            + (f" with keys {sorted(data)}." if isinstance(data, dict) else ".")
        )
    images = np.asarray(data["image_data"])
    labels = np.empty([images.shape[0]], object)
    for name, indices in data["class_dict"].items():
        labels[np.asarray(indices, np.int64)] = name
    if any(label is None for label in labels):
        raise ValueError(
            f"{path}: every row of 'image_data' must belong to a class of "
            "'class_dict'. Received: "
            f"{sum(label is None for label in labels)} rows without a class."
        )
    if images.shape[1:] == (*size, 3):
        return _grouped(labels.tolist(), images, size, **decode)
    return _grouped(labels.tolist(), list(images), size, **decode)


def _grouped(labels, images, size, **decode) -> class_major.ClassMajor:
    """Decodes (or resizes) `images` straight into their class-major slots."""
    classes, inverse, counts = np.unique(
        np.asarray(labels, str), return_inverse=True, return_counts=True
    )
    order = np.argsort(inverse, kind="stable")
    slot = np.empty_like(order)
    slot[order] = np.arange(len(order)) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    grouped = np.zeros((len(classes), counts.max(), *size, 3), np.uint8)
    if isinstance(images, np.ndarray):
        grouped[inverse, slot] = images
    else:
        _decode_into(grouped, inverse, slot, images, size, **decode)
    return class_major.ClassMajor(grouped, counts.astype(np.int64), classes)


def _decode_into(
    grouped, inverse, slot, images, size, num_workers, verbose, chunk=64
):
    def decode_chunk(start):
        for i in range(start, min(start + chunk, len(images))):
            grouped[inverse[i], slot[i]] = _to_array(images[i], size)
        return start

    bar = _progress.progbar(len(images), "image", verbose)
    _common.decode_in_chunks(decode_chunk, len(images), chunk, num_workers, bar)


def _to_array(image, size) -> np.ndarray:
    if isinstance(image, Path):
        try:
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(
                f"Could not decode the image {image}: {error}"
            ) from error
    else:
        image = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    if image.size != size[::-1]:
        image = image.resize(size[::-1], Image.Resampling.LANCZOS)
    return np.asarray(image, np.uint8)
