"""Tests for keras_ga.datasets.omniglot, on the real Omniglot files.

The data is read from `$KERAS_GA_DATA`, else `<repo>/../shared/data`; it must
hold `omniglot/images_background.zip` and `omniglot/images_evaluation.zip`.
"""

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from keras_ga.datasets import omniglot
from tests import support

DATA_DIR = support.data_dir()


def _load(protocol="vinyals", **kwargs):
    """`load_omniglot` from the real files, through the test's cache."""
    return omniglot.load_omniglot(
        protocol,
        data_dir=DATA_DIR,
        cache_dir=OmniglotTest.cache_dir,
        download=False,
        **kwargs,
    )


def _write_zips(root, names):
    """Zips in `root` holding the real images of the characters `names`."""
    for part in omniglot.PARTS:
        source = Path(DATA_DIR) / "omniglot" / f"{part}.zip"
        with zipfile.ZipFile(source) as archive:
            with zipfile.ZipFile(Path(root) / f"{part}.zip", "w") as subset:
                for member in archive.namelist():
                    if any(member.startswith(n + "/") for n in names):
                        subset.writestr(member, archive.read(member))


TWO = ["images_background/Korean/character01"]
TWO += ["images_evaluation/Tengwar/character02"]


def _as_uint8(images):
    """The loader's float32 images in [0, 1] back as the decoded uint8."""
    return np.round(images * 255).astype(np.uint8)


def _characters(splits):
    """The index (in `load_characters`) of each class of unrotated splits."""
    lookup = {c.tobytes(): i for i, c in enumerate(OmniglotTest.images)}
    return {
        split: np.array([lookup[_as_uint8(c[..., 0]).tobytes()] for c in v])
        for split, v in splits.items()
    }


def _tasks(dataset):
    tasks = []
    for batch in dataset.as_numpy_iterator():
        size = batch["support_x"].shape[0]
        tasks += [{k: v[i] for k, v in batch.items()} for i in range(size)]
    return tasks


class OmniglotTest(parameterized.TestCase):
    cache_dir = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cache_dir = tempfile.mkdtemp()
        decode = omniglot._decode_characters
        with mock.patch.object(
            omniglot, "_decode_characters", wraps=decode
        ) as spy:
            cls.images, cls.names = omniglot.load_characters(
                data_dir=DATA_DIR, cache_dir=cls.cache_dir, download=False
            )
        cls.decode_calls = spy.call_count

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cache_dir)
        super().tearDownClass()

    def _episodes(self, split, **kwargs):
        config = dict(
            ways=5,
            shots=1,
            queries=5,
            meta_batch_size=8,
            seed=1,
            num_tasks=16,
            data_dir=DATA_DIR,
            cache_dir=self.cache_dir,
            download=False,
        )
        config.update(kwargs)
        return omniglot.omniglot_episodes(split, **config)

    def test_character_counts(self):
        self.assertEqual(self.images.shape, (1623, 20, 28, 28))
        self.assertEqual(self.images.dtype, np.uint8)
        parts = np.array([n.split("/")[0] for n in self.names])
        self.assertEqual(np.sum(parts == "images_background"), 964)
        self.assertEqual(np.sum(parts == "images_evaluation"), 659)
        alphabets = {tuple(n.split("/")[:2]) for n in self.names}
        self.assertLen(alphabets, 50)
        self.assertLen(set(self.names), 1623)

    def test_strokes_are_one_on_a_zero_background(self):
        train = omniglot.load_omniglot(
            "lake", data_dir=DATA_DIR, cache_dir=self.cache_dir
        )["train"]
        self.assertEqual(train.dtype, np.float32)
        self.assertEqual(train.shape, (964, 20, 28, 28, 1))
        self.assertEqual(train.min(), 0.0)
        self.assertEqual(train.max(), 1.0)
        self.assertLess(train.mean(), 0.2)  # Mostly background.
        self.assertEqual(np.median(train[:, :, 0, 0]), 0.0)  # Corners.

    @parameterized.parameters(
        (0, 1200, 0, 423),
        (100, 1100, 100, 423),
    )
    def test_vinyals_split(self, num_val, train, val, test):
        indices = _characters(_load(num_val=num_val, rotations=False))
        sizes = {k: len(v) for k, v in indices.items()}
        expected = {"train": train, "test": test}
        if num_val:
            expected["val"] = val
        self.assertEqual(sizes, expected)
        pooled = np.concatenate(list(indices.values()))
        np.testing.assert_array_equal(np.sort(pooled), np.arange(1623))
        # Characters of both parts land in both splits: pooled, not by part.
        self.assertGreater(np.sum(indices["test"] < 964), 100)
        self.assertGreater(np.sum(indices["test"] >= 964), 100)

    def test_vinyals_split_depends_on_split_seed(self):
        a, b, c = (
            _characters(_load(rotations=False, split_seed=seed))["test"]
            for seed in (0, 0, 1)
        )
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(np.sort(a), np.sort(c)))

    def test_vinyals_classes_are_four_rotations(self):
        splits = _load("vinyals", num_val=100)
        self.assertEqual(splits["train"].shape, (4400, 20, 28, 28, 1))
        self.assertEqual(splits["val"].shape, (400, 20, 28, 28, 1))
        self.assertEqual(splits["test"].shape, (1692, 20, 28, 28, 1))
        self.assertEqual(_load("vinyals")["train"].shape[0], 4800)
        test = splits["test"]
        for k in range(4):
            np.testing.assert_array_equal(
                test[4 + k], np.rot90(test[4], k, axes=(1, 2))
            )
        unrotated = _load("vinyals", rotations=False)
        self.assertEqual(unrotated["train"].shape[0], 1200)
        self.assertEqual(unrotated["test"].shape[0], 423)
        np.testing.assert_array_equal(unrotated["test"][1], test[4])

    def test_lake_split_is_by_alphabet(self):
        splits = _load("lake")
        self.assertEqual(splits["train"].shape, (964, 20, 28, 28, 1))
        self.assertEqual(splits["test"].shape, (659, 20, 28, 28, 1))
        np.testing.assert_array_equal(
            _as_uint8(splits["train"][..., 0]), self.images[:964]
        )
        np.testing.assert_array_equal(
            _as_uint8(splits["test"][..., 0]), self.images[964:]
        )
        with_val = _load("lake", num_val=64)
        self.assertEqual(with_val["train"].shape[0], 900)
        self.assertEqual(with_val["val"].shape[0], 64)
        self.assertEqual(_load("lake", rotations=True)["train"].shape[0], 3856)

    @parameterized.parameters(
        ("lake", "test", 5, 1, 5),
        ("lake", "test", 20, 1, 5),
        ("vinyals", "train", 5, 5, 15),
        ("vinyals", "train", 20, 1, 5),
    )
    def test_tasks_are_valid(self, protocol, split, ways, shots, queries):
        pool = _as_uint8(_load(protocol)[split])
        flat = pool.reshape(-1, 28 * 28)
        lookup = {row.tobytes(): i for i, row in enumerate(flat)}
        self.assertLen(lookup, flat.shape[0])  # Images identify examples.
        dataset = self._episodes(
            split, protocol=protocol, ways=ways, shots=shots, queries=queries
        )
        self.assertEqual(
            dataset.element_spec["support_x"].shape,
            (8, ways * shots, 28, 28, 1),
        )
        for task in _tasks(dataset):
            ids = {}
            for part in ("support", "query"):
                x = np.round(task[f"{part}_x"] * 255).astype(np.uint8)
                ids[part] = [lookup[i.tobytes()] for i in x]
            self.assertEmpty(set(ids["support"]) & set(ids["query"]))
            self.assertLen(set(ids["support"]), ways * shots)
            self.assertLen(set(ids["query"]), ways * queries)
            classes = {}
            for part, per_class in (("support", shots), ("query", queries)):
                labels = task[f"{part}_y"]
                np.testing.assert_array_equal(
                    np.bincount(labels, minlength=ways), [per_class] * ways
                )
                for label, i in zip(labels, ids[part], strict=True):
                    cls = i // 20
                    self.assertEqual(classes.setdefault(label, cls), cls)
            self.assertLen(set(classes.values()), ways)

    def test_test_tasks_repeat_with_seed(self):
        a = _tasks(self._episodes("test", seed=5))
        b = _tasks(self._episodes("test", seed=5))
        c = _tasks(self._episodes("test", seed=6))
        self.assertLen(a, 16)
        for key in ("support_x", "query_x", "query_y"):
            np.testing.assert_array_equal(
                [t[key] for t in a], [t[key] for t in b]
            )
        self.assertFalse(
            np.array_equal([t["query_x"] for t in a], [t["query_x"] for t in c])
        )

    def test_corrupted_training_tasks(self):
        clean = _tasks(self._episodes("train"))
        corrupted = _tasks(
            self._episodes("train", corrupt_fraction=1.0, corruption="permute")
        )
        for a, b in zip(clean, corrupted, strict=True):
            np.testing.assert_array_equal(a["support_y"], b["support_y"])
            np.testing.assert_array_equal((a["query_y"] + 1) % 5, b["query_y"])
            np.testing.assert_array_equal(a["query_x"], b["query_x"])

    def test_val_split_episodes(self):
        dataset = self._episodes("val", num_val=100, ways=20)
        batch = next(iter(dataset))
        self.assertEqual(batch["query_x"].shape, (8, 100, 28, 28, 1))

    def test_second_load_reads_the_cache(self):
        self.assertEqual(self.decode_calls, 1)
        path = omniglot.cache_path(28, self.cache_dir, data_dir=DATA_DIR)
        self.assertTrue(path.is_file())
        with mock.patch.object(
            omniglot, "_decode_characters", side_effect=AssertionError
        ):
            images, names = omniglot.load_characters(
                data_dir=DATA_DIR, cache_dir=self.cache_dir
            )
        np.testing.assert_array_equal(images, self.images)
        np.testing.assert_array_equal(names, self.names)

    def test_cache_does_not_stand_in_for_missing_files(self):
        # The cache filled from DATA_DIR must not answer for other folders.
        for root in (tempfile.mkdtemp(), "/nonexistent"):
            with self.assertRaisesRegex(
                FileNotFoundError, r"Omniglot not found.*not tried"
            ):
                omniglot.load_omniglot(
                    data_dir=root, cache_dir=self.cache_dir, download=False
                )
            shutil.rmtree(root, ignore_errors=True)

    def test_another_copy_is_decoded_afresh(self):
        with tempfile.TemporaryDirectory() as root:
            _write_zips(root, TWO)
            load = dict(data_dir=root, cache_dir=self.cache_dir, verbose=2)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                images, names = omniglot.load_characters(**load)
            self.assertEqual(list(names), TWO)
            self.assertEqual(images.shape, (2, 20, 28, 28))
            # The decode shows its progress: one line, as verbose=2 does.
            self.assertRegex(out.getvalue(), r"^40/40 - \d+s - .*/image\n$")
            copy = omniglot.cache_path(28, self.cache_dir, data_dir=root)
            self.assertTrue(copy.is_file())
            self.assertNotEqual(
                copy, omniglot.cache_path(28, self.cache_dir, data_dir=DATA_DIR)
            )
            # Changed files (here a third character) are decoded afresh.
            third = "images_background/Korean/character02"
            _write_zips(root, [*TWO, third])
            images, names = omniglot.load_characters(**load)
            self.assertEqual(list(names), sorted([*TWO, third]))
        # The first copy's cache is untouched.
        with mock.patch.object(
            omniglot, "_decode_characters", side_effect=AssertionError
        ):
            images, _ = omniglot.load_characters(
                data_dir=DATA_DIR, cache_dir=self.cache_dir
            )
        self.assertEqual(images.shape, (1623, 20, 28, 28))

    def test_cache_dir_from_environment(self):
        with mock.patch.dict(os.environ, {"KERAS_GA_CACHE": self.cache_dir}):
            path = omniglot.cache_path((28, 28), data_dir=DATA_DIR)
        self.assertEqual(path.parent, Path(self.cache_dir))
        self.assertRegex(path.name, r"^omniglot_v2_28x28_[0-9a-f]{16}\.npz$")

    @parameterized.parameters("truncated", "not_a_zip")
    def test_damaged_zip_is_named(self, damage):
        with tempfile.TemporaryDirectory() as root:
            _write_zips(root, TWO)
            bad = Path(root) / "images_background.zip"
            if damage == "truncated":
                bad.write_bytes(bad.read_bytes()[:5000])
            else:
                bad.write_text("<html>404 Not Found</html>")
            with self.assertRaisesRegex(
                ValueError,
                rf"{bad} is not a readable zip archive \(truncated, damaged "
                r"or not a zip file\): BadZipFile: .*Delete it and download "
                r"images_background\.zip again from .*brendenlake/omniglot",
            ):
                omniglot.load_characters(
                    data_dir=root, cache_dir=root, download=False
                )

    def test_extracted_folders_and_image_size(self):
        names = ["images_background/Korean/character01"]
        names += ["images_evaluation/Tengwar/character02"]
        with tempfile.TemporaryDirectory() as root:
            for part in ("images_background", "images_evaluation"):
                with zipfile.ZipFile(
                    Path(DATA_DIR) / "omniglot" / f"{part}.zip"
                ) as archive:
                    members = [
                        m
                        for m in archive.namelist()
                        if any(m.startswith(n + "/") for n in names)
                    ]
                    archive.extractall(root, members)
            # `data_dir` may be the Omniglot folder itself.
            with mock.patch.dict(os.environ, {"KERAS_GA_DATA": root}):
                images, got = omniglot.load_characters(
                    image_size=(14, 14), cache_dir=root, download=False
                )
        self.assertEqual(list(got), names)
        self.assertEqual(images.shape, (2, 20, 14, 14))
        self.assertGreater(images.max(), 200)

    def test_missing_data(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(
                FileNotFoundError,
                r"Omniglot not found\. Looked for images_background\.zip or "
                r"images_background/, images_evaluation\.zip or "
                rf"images_evaluation/ in \['{root}/omniglot', '{root}'\].*"
                r"brendenlake/omniglot.*not tried \(download=False\)",
            ):
                omniglot.load_omniglot(
                    data_dir=root, cache_dir=root, download=False
                )

    def test_missing_data_and_download_fails(self):
        with tempfile.TemporaryDirectory() as root:
            with mock.patch.object(
                omniglot, "_decode_tfds", side_effect=OSError("offline")
            ):
                with self.assertRaisesRegex(
                    FileNotFoundError,
                    r"Omniglot not found.*The download through "
                    r"tensorflow_datasets failed: OSError: offline\. To "
                    r"provide the files instead, download "
                    r"images_background\.zip and images_evaluation\.zip "
                    r"from .*brendenlake/omniglot",
                ):
                    omniglot.load_omniglot(data_dir=root, cache_dir=root)

    def test_download_without_a_module_says_what_to_install(self):
        missing = ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )
        with tempfile.TemporaryDirectory() as root:
            with mock.patch.object(
                omniglot, "_decode_tfds", side_effect=missing
            ):
                with self.assertRaises(FileNotFoundError) as caught:
                    omniglot.load_omniglot(data_dir=root, cache_dir=root)
        message = str(caught.exception)
        self.assertIn(
            "failed: ModuleNotFoundError: No module named "
            "'importlib_resources'. Installing the missing module "
            "(`pip install importlib_resources`)",
            message,
        )
        # download=True was passed: no advice to pass it.
        self.assertNotIn("download=True", message)

    def test_download_prints_nothing(self):
        import tensorflow_datasets as tfds  # noqa: F401 (for mock.patch)

        class Offline:
            def download_and_prepare(self):
                print("Downloading and preparing dataset Unknown size ...")
                raise OSError("offline")

        out = io.StringIO()
        with tempfile.TemporaryDirectory() as root:
            with (
                mock.patch(
                    "tensorflow_datasets.builder", return_value=Offline()
                ),
                contextlib.redirect_stdout(out),
                self.assertLogs("absl", "INFO") as logs,
                self.assertRaisesRegex(FileNotFoundError, "OSError: offline"),
            ):
                omniglot.load_omniglot(data_dir=root, cache_dir=root)
        self.assertEqual(out.getvalue(), "")
        self.assertTrue(
            any("Downloading and preparing dataset" in r for r in logs.output)
        )

    def test_unknown_protocol(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`protocol` must be one of \('vinyals', 'lake'\)\. "
            r"Received: protocol='finn'",
        ):
            _load("finn")

    @parameterized.parameters(
        {"image_size": 0},
        {"image_size": (28,)},
        {"image_size": "28"},
        {"image_size": (28, 2.5)},
    )
    def test_bad_image_size(self, image_size):
        with self.assertRaisesRegex(
            ValueError,
            r"`image_size` must be a positive int or a \(height, width\) pair"
            r" of positive ints\. Received: image_size=",
        ):
            _load(image_size=image_size)

    def test_rotations_need_square_images(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`image_size` must be square when `rotations=True`\. "
            r"Received: image_size=\(28, 14\)",
        ):
            _load(image_size=(28, 14))

    @parameterized.parameters(("vinyals", 1200), ("lake", 964), ("lake", -1))
    def test_bad_num_val(self, protocol, num_val):
        with self.assertRaisesRegex(
            ValueError,
            r"`num_val` must be in \[0, number of meta-training characters "
            rf"\(\d+\)\)\. Received: num_val={num_val}",
        ):
            _load(protocol, num_val=num_val)

    def test_unknown_split(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`split` must be one of \('train', 'val', 'test'\)\. "
            r"Received: split='valid'",
        ):
            self._episodes("valid")

    def test_val_without_num_val(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`split='val'` needs validation characters: pass `num_val > 0`\. "
            r"Received: num_val=0",
        ):
            self._episodes("val")


if __name__ == "__main__":
    absltest.main()
