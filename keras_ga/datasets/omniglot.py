"""Omniglot (Lake et al. 2015) for few-shot classification.

Reads the original distribution: `images_background.zip` (30 alphabets, 964
characters) and `images_evaluation.zip` (20 alphabets, 659 characters), or
their extracted folders `images_background/<Alphabet>/characterNN/*.png`,
20 images (drawers) per character.

Images are resized to `image_size` (default 28x28) with a Lanczos filter
after conversion to 8-bit grey, then inverted so that strokes are 1 and the
background 0, as in the reference MAML and Reptile pipelines (the originals
are black strokes on white). Arrays are class-major, `[C, 20, H, W, 1]`.

Data location, in order: the `data_dir` argument, else the environment
variable `KERAS_GA_DATA`, else `~/.keras_ga/data`. That folder holds an
`omniglot/` sub-folder with the two zips (or extracted folders); the files
may also sit directly in it. When they are missing and `download=True`, the
images are obtained through `tensorflow_datasets` (`tfds.load("omniglot")`),
which the `datasets` extra installs: `pip install "keras_ga[datasets]"`.

The decoded images of all 1623 characters are cached as one `.npz` file per
source and image size in `cache_dir`, else `$KERAS_GA_CACHE`, else
`~/.cache/keras_ga`, so that later loads take well under a second. The
cache is keyed on the source files (their paths, sizes and modification
times; for extracted folders, those of every PNG): another copy, or
changed files, are decoded afresh, and a folder without the files is an
error (with `download=False`) however full the cache. Files that came
through `tensorflow_datasets` are keyed as such. The first decode shows a
`keras.utils.Progbar`.

Protocols:

- `"vinyals"` (Vinyals et al. 2016; Finn et al. 2017; Nichol et al. 2018):
  all 1623 characters pooled (background, then evaluation, each in sorted
  order), shuffled with `split_seed`, 1200 for meta-training and the other
  423 for meta-testing. Each character is rotated by 0, 90, 180 and 270
  degrees into 4 classes (4800 training, 1692 test classes).
- `"lake"` (Lake et al. 2015): split by alphabet, background characters (964)
  for meta-training and evaluation characters (659) for meta-testing, no
  rotations by default.

With `num_val > 0`, `num_val` characters of the meta-training characters are
set aside for validation (the last `num_val` of the shuffled pool for
`"vinyals"`, a random subset drawn with `split_seed` for `"lake"`).

References:
    Lake, Salakhutdinov and Tenenbaum, "Human-level concept learning through
    probabilistic program induction", Science 2015.
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image

from keras_ga import _checks
from keras_ga import _optional
from keras_ga import _progress
from keras_ga.datasets import _common

PROTOCOLS = ("vinyals", "lake")
PARTS = ("images_background", "images_evaluation")
SPLITS = ("train", "val", "test")
NUM_TRAIN_CHARACTERS = 1200
IMAGES_PER_CHARACTER = 20
CACHE_VERSION = 2  # Bump when decoding changes, to ignore stale caches.
SOURCE_URL = "https://github.com/brendenlake/omniglot/tree/master/python"


def load_omniglot(
    protocol: str = "vinyals",
    *,
    data_dir=None,
    image_size=28,
    num_val: int = 0,
    rotations: bool | None = None,
    split_seed: int = 0,
    cache_dir=None,
    download: bool = True,
    num_workers: int | None = None,
    verbose="auto",
) -> dict[str, np.ndarray]:
    """Loads Omniglot as class-major arrays, split by `protocol`.

    Args:
        protocol: `"vinyals"` or `"lake"`; see the module docstring.
        data_dir: folder holding `omniglot/` (or the Omniglot files).
        image_size: int or `(height, width)` of the resized images.
        num_val: characters of the meta-training set kept for validation.
        rotations: whether each character gives 4 classes rotated by
            0/90/180/270 degrees; `None` uses the protocol's default (`True`
            for `"vinyals"`, `False` for `"lake"`). Class `4 * c + k` is
            character `c` rotated by `90 * k` degrees counter-clockwise.
        split_seed: seed of the character split.
        cache_dir: folder of the decoded-image cache.
        download: whether to fall back on `tensorflow_datasets` when the
            files are missing.
        num_workers: threads decoding PNGs on the first load.
        verbose: progress of the first decode: 0 (none), 1 (a bar updated
            in place), 2 (one line when done) or `"auto"` (1 on a terminal,
            else 2).

    Returns:
        A dict with `"train"`, `"test"` and, when `num_val > 0`, `"val"`:
        float32 arrays `[classes, 20, height, width, 1]` in [0, 1].

    Raises:
        ValueError: for an unknown `protocol`, a bad `image_size` or
            `num_val`, or a damaged zip (named in the message).
        FileNotFoundError: when the data is neither on disk nor obtainable;
            the message says where it was looked for and why a download
            failed.

    Example:

    Needs the Omniglot files in `data_dir` or `$KERAS_GA_DATA` (or a
    download):

    ```python
    splits = keras_ga.datasets.load_omniglot("vinyals")
    print(splits["train"].shape)  # (4800, 20, 28, 28, 1): 1200 characters x 4
    print(splits["test"].shape)  # (1692, 20, 28, 28, 1): 423 characters x 4
    ```
    """
    splits = _load_uint8(
        protocol,
        data_dir=data_dir,
        image_size=image_size,
        num_val=num_val,
        rotations=rotations,
        split_seed=split_seed,
        cache_dir=cache_dir,
        download=download,
        num_workers=num_workers,
        verbose=verbose,
    )
    return {
        k: np.multiply(v, 1.0 / 255.0, dtype=np.float32)
        for k, v in splits.items()
    }


def omniglot_episodes(
    split: str,
    *,
    ways: int,
    shots: int,
    queries: int,
    meta_batch_size: int,
    seed: int,
    num_tasks: int | None = None,
    protocol: str = "vinyals",
    data_dir=None,
    image_size=28,
    num_val: int = 0,
    rotations: bool | None = None,
    split_seed: int = 0,
    cache_dir=None,
    download: bool = True,
    shuffle_examples: bool = True,
    transform=None,
    verbose="auto",
    start=0,
    corrupt_fraction: float = 0.0,
    corruption: str = "shuffle",
    within_alphabet: bool = False,
    pipeline: str = "tf.data",
):
    """Episode dataset of one Omniglot split, in one call.

    Args:
        split: `"train"`, `"val"` (needs `num_val > 0`) or `"test"`.
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
        within_alphabet: whether each task's characters come from one
            alphabet (drawn uniformly among the split's alphabets with at
            least `ways` classes), as in Lake et al.'s one-shot runs,
            rather than from the whole split.
        protocol: as in `load_omniglot`.
        data_dir: as in `load_omniglot`.
        image_size: as in `load_omniglot`.
        num_val: as in `load_omniglot`.
        rotations: as in `load_omniglot`.
        split_seed: as in `load_omniglot`.
        cache_dir: as in `load_omniglot`.
        download: as in `load_omniglot`.
        verbose: as in `load_omniglot`.

    Returns:
        A `tf.data.Dataset` (or, with `pipeline="numpy"`, a
        `FewShotEpisodes`) of episode dicts with images
        `[meta_batch_size, examples, height, width, 1]` float32 in [0, 1].

    Raises:
        ValueError: for an unknown `split`, or `"val"` with `num_val=0`,
            besides the errors of `load_omniglot` and `few_shot_episodes`.

    Example:

    ```python
    train = omniglot_episodes("train", ways=5, shots=1, queries=15,
                              meta_batch_size=32, seed=0)
    test = omniglot_episodes("test", ways=5, shots=1, queries=15,
                             meta_batch_size=20, seed=1, num_tasks=600)
    ```
    """
    _checks.check_one_of("split", split, SPLITS)
    if split == "val" and num_val == 0:
        raise ValueError(
            "`split='val'` needs validation characters: pass `num_val > 0`. "
            f"Received: num_val={num_val}."
        )
    splits, alphabets = _load_uint8(
        protocol,
        data_dir=data_dir,
        image_size=image_size,
        num_val=num_val,
        rotations=rotations,
        split_seed=split_seed,
        cache_dir=cache_dir,
        download=download,
        num_workers=None,
        verbose=verbose,
        with_alphabets=True,
    )
    groups = None
    if within_alphabet:
        groups = np.unique(alphabets[split], return_inverse=True)[1]
    return _common.few_shot_episodes(
        pipeline,
        splits[split],
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
        class_groups=groups,
    )


def cache_path(image_size=28, cache_dir=None, *, data_dir=None) -> Path:
    """The `.npz` file caching the characters of `data_dir` at `image_size`.

    Its name holds a digest of the source files found from `data_dir` (see
    the module docstring), or of the `tensorflow_datasets` copy when there
    are none.
    """
    size = _common.check_image_size(image_size)
    return _cache_file(size, cache_dir, _find_sources(data_dir))


def load_characters(
    *,
    data_dir=None,
    image_size=28,
    cache_dir=None,
    download: bool = True,
    num_workers: int | None = None,
    verbose="auto",
) -> tuple[np.ndarray, np.ndarray]:
    """All 1623 characters, decoded once and then read from the cache.

    Args:
        data_dir, image_size, cache_dir, download, num_workers, verbose: as
            in `load_omniglot`.

    Returns:
        `(images, names)`: uint8 `[1623, 20, height, width]` with strokes at
        255 and background at 0, and the names `"<part>/<Alphabet>/
        characterNN"` in sorted order (the 964 background characters first).
    """
    size = _common.check_image_size(image_size)
    _progress.resolve_verbose(verbose)
    sources = _find_sources(data_dir)
    if sources is None and not download:
        raise _not_found(data_dir, None)
    path = _cache_file(size, cache_dir, sources)
    cached = _common.read_cache(path)
    if cached is not None:
        return cached["images"], cached["names"]
    logging.info("Decoding Omniglot into the cache %s.", path)
    images, names = _decode_characters(
        data_dir, sources, size, num_workers, verbose
    )
    _common.write_cache(path, images=images, names=names)
    return images, names


def _cache_file(size, cache_dir, sources) -> Path:
    height, width = size
    key = _common.digest(_source_stamps(sources))
    name = f"omniglot_v{CACHE_VERSION}_{height}x{width}_{key}.npz"
    return _common.cache_root(cache_dir) / name


def _source_stamps(sources):
    """What identifies the source files; see the module docstring."""
    if sources is None:
        return "tensorflow_datasets:omniglot"
    stamps = []
    for part in PARTS:
        source = sources[part]
        stamps.append(_common.file_stamp(source))
        if source.is_dir():
            stamps += [
                (str(f.relative_to(source)), *_common.file_stamp(f)[1:])
                for f in sorted(source.glob("*/*/*.png"))
            ]
    return stamps


def _load_uint8(
    protocol, *, rotations, num_val, split_seed, with_alphabets=False, **kwargs
):
    _checks.check_one_of("protocol", protocol, PROTOCOLS)
    size = _common.check_image_size(kwargs["image_size"])
    if rotations is None:
        rotations = protocol == "vinyals"
    if rotations and size[0] != size[1]:
        raise ValueError(
            "`image_size` must be square when `rotations=True`. "
            f"Received: image_size={kwargs['image_size']!r}."
        )
    images, names = load_characters(**kwargs)
    background = np.char.startswith(names.astype(str), PARTS[0])
    indices = _split_characters(protocol, background, num_val, split_seed)
    splits = {
        split: _as_classes(images[index], rotations)
        for split, index in indices.items()
    }
    if not with_alphabets:
        return splits
    # "<part>/<Alphabet>/characterNN": a rotated character is 4 classes of
    # its alphabet (class 4 * c + k, see `_as_classes`).
    alphabet = np.array([str(n).split("/")[1] for n in names])
    alphabets = {
        split: np.repeat(alphabet[index], 4 if rotations else 1)
        for split, index in indices.items()
    }
    return splits, alphabets


def _split_characters(protocol, background, num_val, split_seed):
    rng = np.random.default_rng(split_seed)
    if protocol == "vinyals":
        pool = rng.permutation(background.shape[0])
        train, test = pool[:NUM_TRAIN_CHARACTERS], pool[NUM_TRAIN_CHARACTERS:]
    else:
        train = rng.permutation(np.flatnonzero(background))
        test = np.flatnonzero(~background)
    _checks.check_int("num_val", num_val)
    if not 0 <= num_val < train.shape[0]:
        raise ValueError(
            "`num_val` must be in [0, number of meta-training characters "
            f"({train.shape[0]})). Received: num_val={num_val}."
        )
    splits = {"train": train[: train.shape[0] - num_val], "test": test}
    if num_val:
        splits["val"] = train[train.shape[0] - num_val :]
    if protocol == "lake":
        splits["train"] = np.sort(splits["train"])
    return splits


def _as_classes(images, rotations):
    images = images[..., None]
    if not rotations:
        return images
    rotated = [np.rot90(images, k, axes=(2, 3)) for k in range(4)]
    stacked = np.stack(rotated, axis=1)
    return stacked.reshape(-1, *stacked.shape[2:])


def _find_sources(data_dir) -> dict[str, Path] | None:
    """The folder or zip of each part, or `None` when one is missing."""
    sources = {}
    for part in PARTS:
        for folder in _common.dataset_dirs("omniglot", data_dir):
            for candidate in (folder / part, folder / f"{part}.zip"):
                if candidate.exists() and part not in sources:
                    sources[part] = candidate
    return sources if len(sources) == len(PARTS) else None


def _not_found(data_dir, download_error) -> FileNotFoundError:
    """Where Omniglot was looked for, why a download failed, what to do."""
    folders = [str(f) for f in _common.dataset_dirs("omniglot", data_dir)]
    looked_for = ", ".join(f"{p}.zip or {p}/" for p in PARTS)
    files = (
        f"images_background.zip and images_evaluation.zip from {SOURCE_URL} "
        "into one of these folders (or pass their folder as `data_dir`)"
    )
    if download_error is None:
        advice = (
            f"Download {files}, or pass `download=True` to obtain them "
            "through tensorflow_datasets (needs network access and "
            '`pip install "keras_ga[datasets]"`). Download through '
            "tensorflow_datasets: not tried (download=False)."
        )
    else:
        missing = getattr(download_error, "name", None)
        install = (
            f" Installing the missing module (`pip install {missing}`) may "
            "let the download work."
            if isinstance(download_error, ModuleNotFoundError) and missing
            else ""
        )
        advice = (
            "The download through tensorflow_datasets failed: "
            f"{type(download_error).__name__}: {download_error}.{install} "
            f"To provide the files instead, download {files}."
        )
    return FileNotFoundError(
        f"Omniglot not found. Looked for {looked_for} in {folders} (from "
        f"`data_dir`, else ${_common.DATA_ENV}, else "
        f"{_common.DEFAULT_DATA_DIR}). {advice}"
    )


def _decode_characters(data_dir, sources, size, num_workers, verbose):
    if sources is not None:
        return _decode_sources(sources, size, num_workers, verbose)
    try:
        # tensorflow_datasets prints its download notice to stdout: log it.
        with contextlib.redirect_stdout(_LogWriter()):
            return _decode_tfds(size)
    except Exception as error:  # Any failure means: not obtainable.
        raise _not_found(data_dir, error) from error


class _LogWriter(io.StringIO):
    """A stdout stand-in that sends each line to absl logging instead."""

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                logging.info("tensorflow_datasets: %s", line)
        return len(text)


def _list_part(source: Path) -> list[tuple[str, Path | bytes]]:
    """`(character name, file or PNG bytes)` of one part's images."""
    if source.is_dir():
        files = sorted(source.glob("*/*/*.png"))
        return [(_character_name(source.name, f), f) for f in files]
    part = source.name.removesuffix(".zip")
    try:
        with zipfile.ZipFile(source) as archive:
            members = sorted(
                n for n in archive.namelist() if n.endswith(".png")
            )
            return [
                (_character_name(part, Path(n)), archive.read(n))
                for n in members
            ]
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(
            f"{source} is not a readable zip archive (truncated, damaged or "
            f"not a zip file): {type(error).__name__}: {error}. Delete it and "
            f"download {part}.zip again from {SOURCE_URL}, or put its "
            f"extracted folder {part}/ in its place."
        ) from error


def _character_name(part: str, file: Path) -> str:
    return f"{part}/{file.parent.parent.name}/{file.parent.name}"


def _decode_sources(sources, size, num_workers, verbose):
    entries = [e for part in PARTS for e in _list_part(sources[part])]
    entries.sort(key=lambda entry: entry[0])  # Stable: drawers stay sorted.
    names = np.array(sorted({name for name, _ in entries}))
    counts = np.unique([name for name, _ in entries], return_counts=True)[1]
    if np.any(counts != IMAGES_PER_CHARACTER):
        raise ValueError(
            f"Every Omniglot character must have {IMAGES_PER_CHARACTER} "
            f"images. Received: counts {sorted(set(counts.tolist()))} in "
            f"{sorted(str(s) for s in sources.values())}."
        )
    files = [e[1] for e in entries]
    images = _decode_parallel(files, size, num_workers, verbose)
    return images.reshape(len(names), IMAGES_PER_CHARACTER, *size), names


def _decode_parallel(files, size, num_workers, verbose, chunk=512):
    images = np.empty((len(files), *size), np.uint8)

    def decode_chunk(start):
        for i in range(start, min(start + chunk, len(files))):
            data = files[i]
            if isinstance(data, Path):
                data = data.read_bytes()
            images[i] = _to_array(Image.open(io.BytesIO(data)), size)
        return start

    bar = _progress.progbar(len(files), "image", verbose)
    _common.decode_in_chunks(decode_chunk, len(files), chunk, num_workers, bar)
    return images


def _to_array(image: Image.Image, size) -> np.ndarray:
    grey = image.convert("L").resize(size[::-1], Image.Resampling.LANCZOS)
    return 255 - np.asarray(grey, np.uint8)


def _decode_tfds(size):
    with _optional.requires_extra("datasets", feature="Downloading Omniglot"):
        import tensorflow_datasets as tfds

    logging.info("Obtaining Omniglot through tensorflow_datasets.")
    builder = tfds.builder("omniglot")
    builder.download_and_prepare()
    alphabets = builder.info.features["alphabet"]
    by_name = {}
    for split, part in (("train", PARTS[0]), ("test", PARTS[1])):
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            alphabet = alphabets.int2str(example["alphabet"])
            number = int(example["alphabet_char_id"]) + 1
            name = f"{part}/{alphabet}/character{number:02d}"
            image = Image.fromarray(example["image"][..., 0])
            by_name.setdefault(name, []).append(_to_array(image, size))
    # The drawer order within a character is tfds's, not the file order.
    names = np.array(sorted(by_name))
    images = np.stack([np.stack(by_name[n]) for n in names])
    return images, names
