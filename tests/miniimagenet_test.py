"""Tests for keras_ga.datasets.miniimagenet.

The real Ravi & Larochelle split files are read from `$KERAS_GA_DATA`, else
`<repo>/../shared/data` (`miniimagenet/{train,val,test}.csv`); the images are
not distributed there, so the tests write images for a subset of the rows.
"""

import contextlib
import csv
import io
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized
from PIL import Image

from keras_ga.datasets import miniimagenet
from tests import support

DATA_DIR = support.data_dir()
REAL = DATA_DIR / "miniimagenet"
CLASSES, PER_CLASS = 5, 25


def _color(cls, example):
    return (40 * cls + 20, 8 * example + 10, 128)


def _subset(split):
    """The first `PER_CLASS` rows of each of the first `CLASSES` classes."""
    rows = {}
    with open(REAL / f"{split}.csv", newline="") as f:
        for filename, label in list(csv.reader(f))[1:]:
            if len(rows) < CLASSES or label in rows:
                rows.setdefault(label, [])
                if len(rows[label]) < PER_CLASS:
                    rows[label].append(filename)
    return rows


def _write_split(folder, split, image_format, size):
    """Writes a filtered split file and solid-colour images for its rows."""
    rows = _subset(split)
    (folder / "images").mkdir(exist_ok=True)
    with open(folder / f"{split}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        # Interleave classes so that grouping is exercised.
        for example in range(PER_CLASS):
            for cls, label in enumerate(sorted(rows)):
                filename = rows[label][example]
                if image_format == "PNG":
                    filename = filename.replace(".jpg", ".png")
                image = Image.new("RGB", size, _color(cls, example))
                image.save(folder / "images" / filename, format=image_format)
                writer.writerow([filename, label])
    return sorted(rows)


def _write_csv(path, rows, header=("filename", "label")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


class MiniImageNetTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Path(tempfile.mkdtemp())
        # Decodes are cached: keep them out of the user's cache.
        cls.environ = mock.patch.dict(
            os.environ, {"KERAS_GA_CACHE": str(cls.root / "cache")}
        )
        cls.environ.start()
        cls.folder = cls.root / "miniimagenet"
        cls.folder.mkdir()
        cls.train_classes = _write_split(cls.folder, "train", "JPEG", (100, 90))
        cls.val_classes = _write_split(cls.folder, "val", "PNG", (84, 84))
        rng = np.random.default_rng(0)
        cls.pickled = rng.integers(0, 256, (30, 84, 84, 3), np.uint8)
        cls.class_dict = {"n02": list(range(0, 30, 2)), "n01": [1, 3, 5, 7]}
        cls.class_dict["n03"] = list(range(9, 30, 2))
        with open(cls.folder / "mini-imagenet-cache-test.pkl", "wb") as f:
            pickle.dump(
                {"image_data": cls.pickled, "class_dict": cls.class_dict}, f
            )
        # A test.csv whose images are missing: the pickle must win.
        _write_csv(cls.folder / "test.csv", [["missing.jpg", "n01"]])

    @classmethod
    def tearDownClass(cls):
        cls.environ.stop()
        shutil.rmtree(cls.root)
        super().tearDownClass()

    def _check_colors(self, data, tolerance):
        for cls in range(CLASSES):
            for example in range(PER_CLASS):
                mean = data.images[cls, example].reshape(-1, 3).mean(axis=0)
                np.testing.assert_allclose(
                    mean, _color(cls, example), atol=tolerance
                )

    def test_csv_with_jpeg_images_resized(self):
        data = miniimagenet.load_miniimagenet("train", data_dir=self.root)
        self.assertEqual(data.images.shape, (5, 25, 84, 84, 3))
        self.assertEqual(data.images.dtype, np.uint8)
        np.testing.assert_array_equal(data.counts, [25] * 5)
        np.testing.assert_array_equal(data.classes, self.train_classes)
        self._check_colors(data, tolerance=3)

    def test_csv_with_png_images_and_env_data_dir(self):
        with mock.patch.dict(os.environ, {"KERAS_GA_DATA": str(self.root)}):
            data = miniimagenet.load_miniimagenet("val", image_size=(32, 40))
        self.assertEqual(data.images.shape, (5, 25, 32, 40, 3))
        np.testing.assert_array_equal(data.classes, self.val_classes)
        self._check_colors(data, tolerance=0)

    def test_pickle(self):
        data = miniimagenet.load_miniimagenet("test", data_dir=self.folder)
        np.testing.assert_array_equal(data.classes, ["n01", "n02", "n03"])
        np.testing.assert_array_equal(data.counts, [4, 15, 11])
        self.assertEqual(data.images.shape, (3, 15, 84, 84, 3))
        for c, name in enumerate(data.classes):
            indices = self.class_dict[name]
            np.testing.assert_array_equal(
                data.images[c, : len(indices)], self.pickled[indices]
            )
            self.assertFalse(np.any(data.images[c, len(indices) :]))

    def test_pickle_resized(self):
        data = miniimagenet.load_miniimagenet(
            "test", data_dir=self.root, image_size=16
        )
        self.assertEqual(data.images.shape, (3, 15, 16, 16, 3))

    def test_episodes(self):
        dataset = miniimagenet.miniimagenet_episodes(
            "train",
            ways=5,
            shots=1,
            queries=15,
            meta_batch_size=2,
            seed=0,
            num_tasks=4,
            data_dir=self.root,
        )
        spec = dataset.element_spec
        self.assertEqual(spec["support_x"].shape, (2, 5, 84, 84, 3))
        self.assertEqual(spec["query_y"].shape, (2, 75))
        batch = next(iter(dataset))
        self.assertEqual(batch["query_x"].dtype, tf.float32)
        x = batch["query_x"].numpy()
        self.assertBetween(x.min(), 0.0, 1.0)
        self.assertBetween(x.max(), 0.0, 1.0)
        # The red channel encodes the class: one class per label.
        red = x[..., 0].mean(axis=(2, 3)) * 255
        red = np.round((red - 20) / 40).astype(int)
        for task in range(2):
            pairs = set(zip(batch["query_y"][task].numpy(), red[task]))
            self.assertLen(pairs, 5)

    def test_numpy_pipeline_gives_the_same_tasks(self):
        kwargs = dict(
            ways=5,
            shots=1,
            queries=2,
            meta_batch_size=2,
            seed=3,
            num_tasks=4,
            data_dir=self.root,
        )
        expected = list(
            miniimagenet.miniimagenet_episodes(
                "train", **kwargs
            ).as_numpy_iterator()
        )
        actual = list(
            miniimagenet.miniimagenet_episodes(
                "train", pipeline="numpy", **kwargs
            )
        )
        self.assertLen(actual, 2)
        for a, e in zip(actual, expected, strict=True):
            for key in e:
                np.testing.assert_array_equal(a[key], e[key], key)

    def test_csv_decode_shows_progress_and_is_cached(self):
        with tempfile.TemporaryDirectory() as cache:
            load = dict(data_dir=self.root, cache_dir=cache)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                data = miniimagenet.load_miniimagenet("val", verbose=2, **load)
            self.assertRegex(out.getvalue(), r"^125/125 - \d+s - .*/image\n$")
            files = list(Path(cache).glob("*.npz"))
            self.assertLen(files, 1)
            self.assertRegex(
                files[0].name,
                r"^miniimagenet_v1_val_84x84_[0-9a-f]{16}\.npz$",
            )
            out = io.StringIO()
            with (
                mock.patch.object(
                    miniimagenet, "_to_array", side_effect=AssertionError
                ),
                contextlib.redirect_stdout(out),
            ):
                cached = miniimagenet.load_miniimagenet("val", **load)
            self.assertEqual(out.getvalue(), "")
        for field in ("images", "counts", "classes"):
            np.testing.assert_array_equal(
                getattr(cached, field), getattr(data, field)
            )

    def test_cache_is_keyed_on_the_source(self):
        with tempfile.TemporaryDirectory() as root:
            root = Path(root)
            copies = [root / "a", root / "b"]
            for folder in copies:
                folder.mkdir()
                _write_split(folder, "val", "PNG", (84, 84))
            cache = root / "cache"
            load = dict(cache_dir=cache, verbose=0)
            for folder in copies:
                miniimagenet.load_miniimagenet("val", data_dir=folder, **load)
            # Another copy of the same files is decoded afresh.
            self.assertLen(list(cache.glob("*.npz")), 2)
            # So is a changed image, whatever its cached version.
            with open(copies[0] / "val.csv", newline="") as f:
                changed = list(csv.reader(f))[1][0]
            image = copies[0] / "images" / changed
            Image.new("RGB", (84, 84), (255, 255, 255)).save(image)
            os.utime(image, ns=(1, 1))
            data = miniimagenet.load_miniimagenet(
                "val", data_dir=copies[0], **load
            )
            self.assertEqual(data.images[0, 0].min(), 255)
            self.assertLen(list(cache.glob("*.npz")), 3)
            # A listed image gone: an error, not the cache.
            image.unlink()
            with self.assertRaisesRegex(
                FileNotFoundError, rf"Image {image} listed in .* does not exist"
            ):
                miniimagenet.load_miniimagenet(
                    "val", data_dir=copies[0], **load
                )

    @parameterized.parameters(("train", 64), ("val", 16), ("test", 20))
    def test_real_split_files(self, split, num_classes):
        # The loader reads every row; the images are not in the folder.
        with self.assertRaisesRegex(
            FileNotFoundError,
            rf"{REAL}/{split}\.csv lists {num_classes * 600} images expected",
        ):
            miniimagenet.load_miniimagenet(split, data_dir=DATA_DIR)
        with open(REAL / f"{split}.csv", newline="") as f:
            header, *rows = csv.reader(f)
        self.assertEqual(header, ["filename", "label"])
        self.assertLen(rows, num_classes * 600)
        labels, counts = np.unique([r[1] for r in rows], return_counts=True)
        self.assertLen(labels, num_classes)
        np.testing.assert_array_equal(counts, [600] * num_classes)

    def test_real_split_files_without_images(self):
        with self.assertRaisesRegex(
            FileNotFoundError,
            rf"The miniImageNet images folder {REAL}/images does not exist; "
            rf"{REAL}/train\.csv lists 38400 images expected in it\.",
        ):
            miniimagenet.load_miniimagenet("train", data_dir=DATA_DIR)

    def test_missing_image(self):
        with tempfile.TemporaryDirectory() as root:
            root = Path(root)
            (root / "images").mkdir()
            for name in ("a.jpg", "b.jpg"):
                Image.new("RGB", (8, 8)).save(root / "images" / name)
            rows = [["a.jpg", "n1"], ["b.jpg", "n1"], ["c.jpg", "n2"]]
            _write_csv(root / "train.csv", rows)
            with self.assertRaisesRegex(
                FileNotFoundError,
                rf"Image {root}/images/c\.jpg listed in {root}/train\.csv row "
                r"4 \(filename=c\.jpg\) does not exist\.",
            ):
                miniimagenet.load_miniimagenet("train", data_dir=root)

    def test_unreadable_image(self):
        with tempfile.TemporaryDirectory() as root:
            root = Path(root)
            (root / "images").mkdir()
            (root / "images" / "bad.jpg").write_bytes(b"not an image")
            _write_csv(root / "val.csv", [["bad.jpg", "n1"]])
            with self.assertRaisesRegex(
                ValueError,
                rf"Could not decode the image {root}/images/bad\.jpg",
            ):
                miniimagenet.load_miniimagenet("val", data_dir=root)

    def test_bad_header(self):
        with tempfile.TemporaryDirectory() as root:
            _write_csv(Path(root) / "val.csv", [], header=("file", "class"))
            with self.assertRaisesRegex(
                ValueError,
                rf"{root}/val\.csv must start with the header filename,label\."
                r" Received: header=\['file', 'class'\]",
            ):
                miniimagenet.load_miniimagenet("val", data_dir=root)

    def test_bad_row(self):
        with tempfile.TemporaryDirectory() as root:
            _write_csv(Path(root) / "val.csv", [["a.jpg", "n1", "extra"]])
            with self.assertRaisesRegex(
                ValueError,
                rf"{root}/val\.csv row 2 must have 2 fields, filename and "
                r"label\. Received: \['a\.jpg', 'n1', 'extra'\]",
            ):
                miniimagenet.load_miniimagenet("val", data_dir=root)

    def test_not_found(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(
                FileNotFoundError,
                r"miniImageNet split 'val' not found\. Looked for "
                r"mini-imagenet-cache-val\.pkl or val\.csv \(with images/\) "
                rf"in \['{root}/miniimagenet', '{root}'\]",
            ):
                miniimagenet.load_miniimagenet("val", data_dir=root)

    def test_pickle_without_keys(self):
        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "mini-imagenet-cache-train.pkl"
            path.write_bytes(pickle.dumps({"images": []}))
            with self.assertRaisesRegex(
                ValueError,
                rf"{path} must hold a dict with keys 'image_data' and "
                r"'class_dict'\. Received: dict with keys \['images'\]\.",
            ):
                miniimagenet.load_miniimagenet("train", data_dir=root)

    def test_pickle_rows_without_class(self):
        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "mini-imagenet-cache-train.pkl"
            data = {
                "image_data": np.zeros((3, 84, 84, 3), np.uint8),
                "class_dict": {"n1": [0, 2]},
            }
            path.write_bytes(pickle.dumps(data))
            with self.assertRaisesRegex(
                ValueError,
                rf"{path}: every row of 'image_data' must belong to a class "
                r"of 'class_dict'\. Received: 1 rows without a class\.",
            ):
                miniimagenet.load_miniimagenet("train", data_dir=root)

    def test_unknown_split(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`split` must be one of \('train', 'val', 'test'\)\. "
            r"Received: split='valid'",
        ):
            miniimagenet.load_miniimagenet("valid", data_dir=self.root)

    def test_bad_image_size(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`image_size` must be a positive int or a \(height, width\) pair"
            r" of positive ints\. Received: image_size=-84",
        ):
            miniimagenet.load_miniimagenet(
                "train", data_dir=self.root, image_size=-84
            )


if __name__ == "__main__":
    absltest.main()
