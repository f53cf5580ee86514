"""The shipped models (`benchmarks/models/`) and the tools that ship them.

`ShippedModelsTest` checks the real manifest: every entry's fields and
their types, and that its file exists, loads and fits the entry. The other
tests run the tools end to end on a tiny Omniglot run in a temporary
folder: ship it, then re-evaluate it.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from benchmarks import _models
from examples import train
from tests import support

TINY = support.tiny_omniglot(iterations=2, eval_every=2, val_tasks=0)
make_tempdir = support.make_tempdir


class ShippedModelsTest(absltest.TestCase):
    def test_manifest_lists_every_model_file_once(self):
        with open(_models.manifest_path()) as f:
            manifest = json.load(f)
        self.assertEqual(list(manifest), ["models"])
        self.assertIsInstance(manifest["models"], list)
        names = [entry["name"] for entry in manifest["models"]]
        self.assertCountEqual(names, set(names))
        files = [
            f for f in os.listdir(_models.MODELS_DIR) if f.endswith(".keras")
        ]
        self.assertCountEqual(files, [e["file"] for e in manifest["models"]])

    def test_each_entry_is_complete_and_its_file_loads(self):
        for entry in _models.load_manifest():
            with self.subTest(entry["name"]):
                _models.check_entry(entry)
                path = os.path.join(_models.MODELS_DIR, entry["file"])
                self.assertLess(os.path.getsize(path), 10 * 2**20)
                base = keras.models.load_model(path)
                size = entry["image_size"]
                self.assertEqual(base.input_shape[1:3], (size, size))
                self.assertEqual(base.output_shape[-1], entry["ways"])
                self.assertIsNone(getattr(base, "optimizer", None))
                model = _models.load_meta_model(entry)
                self.assertEqual(model.algo, entry["algo"])


def _entry():
    """A valid entry, its file aside."""
    return {
        "name": "tiny",
        "file": "tiny.keras",
        "dataset": "omniglot",
        "protocol": "vinyals",
        "ways": 5,
        "shots": 1,
        "image_size": 28,
        "algo": "maml",
        "weighting": "uniform",
        "seed": 0,
        "evaluation": {
            "protocol": "transductive",
            "inner_steps": 3,
            "inner_optimizer": "sgd",
            "inner_learning_rate": 0.4,
            "queries": 1,
            "num_tasks": 600,
            "eval_seed": 1000,
        },
        "meta_model": {"algo": "maml"},
        "accuracy": 0.97,
        "ci95": 0.005,
        "training": {
            "iterations": 4000,
            "meta_batch_size": 8,
            "train_seconds": 240.0,
        },
        "command": "python -m examples.omniglot",
        "date": "2025-01-31",
        "hardware": "2 logical cores",
    }


class CheckEntryTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.models_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.models_dir)
        with open(os.path.join(self.models_dir, "tiny.keras"), "w") as f:
            f.write("placeholder")

    def test_valid_entry(self):
        _models.check_entry(_entry(), self.models_dir)

    @parameterized.named_parameters(
        ("missing", "seed", None, r"`seed` is missing"),
        ("bool", "ways", True, r"`ways` must be int\. Received: ways=True"),
        ("str", "accuracy", "97%", r"`accuracy` must be float"),
        ("range", "accuracy", 97.0, r"`accuracy` must be a fraction"),
        ("split", "protocol", "ravi_larochelle", r"`protocol` must be one"),
        ("date", "date", "31/01/2025", r"`date` must be YYYY-MM-DD"),
        ("file", "file", "other.keras", r"`file` must be `<name>.keras`"),
    )
    def test_invalid_field(self, field, value, message):
        entry = _entry()
        if value is None:
            del entry[field]
        else:
            entry[field] = value
        with self.assertRaisesRegex(
            ValueError, r"Manifest entry 'tiny' is invalid: .*" + message
        ):
            _models.check_entry(entry, self.models_dir)

    def test_nested_fields_are_checked(self):
        entry = _entry()
        del entry["evaluation"]["num_tasks"]
        entry["training"]["iterations"] = 4000.5
        with self.assertRaisesRegex(
            ValueError,
            r"`evaluation\.num_tasks` is missing; `training\.iterations` "
            r"must be int",
        ):
            _models.check_entry(entry, self.models_dir)

    def test_unknown_evaluation_protocol(self):
        entry = _entry()
        entry["evaluation"]["protocol"] = "inductive"
        with self.assertRaisesRegex(
            ValueError, r"`evaluation\.protocol` must be one of"
        ):
            _models.check_entry(entry, self.models_dir)

    def test_missing_file(self):
        os.remove(os.path.join(self.models_dir, "tiny.keras"))
        with self.assertRaisesRegex(
            ValueError, r"`file` must exist in .*Received: file='tiny\.keras'"
        ):
            _models.check_entry(_entry(), self.models_dir)


class ShipAndReevaluateTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.run_dir = os.path.join(make_tempdir(cls), "run")
        cls.summary = train.train_and_evaluate(TINY, cls.run_dir)
        cls.models_dir = make_tempdir(cls)
        cls.entry = _models.ship(
            cls.run_dir, "tiny_fomaml", models_dir=cls.models_dir
        )

    def test_ship_writes_the_base_model_and_the_entry(self):
        entry = self.entry
        self.assertEqual(_models.load_manifest(self.models_dir), [entry])
        _models.check_entry(entry, self.models_dir)
        transductive, _, moving = self.summary["results"]
        self.assertEqual(entry["accuracy"], transductive["mean"])
        self.assertEqual(entry["ci95"], transductive["ci95"])
        self.assertEqual(
            entry["evaluation"],
            {
                "protocol": "transductive",
                "inner_steps": 3,
                "inner_optimizer": "sgd",
                "inner_learning_rate": 0.4,
                "queries": 1,
                "num_tasks": 4,
                "eval_seed": 1000,
            },
        )
        self.assertEqual(
            (entry["ways"], entry["algo"], entry["protocol"]),
            (3, "fomaml", "vinyals"),
        )
        self.assertEqual(entry["command"], self.summary["command"])
        base = keras.models.load_model(
            os.path.join(self.models_dir, entry["file"])
        )
        self.assertNotIsInstance(base, keras_ga.MetaModel)
        self.assertIsNone(getattr(base, "optimizer", None))

    def test_shipping_a_name_again_replaces_its_entry(self):
        models_dir = make_tempdir(self)
        shutil.copytree(self.models_dir, models_dir, dirs_exist_ok=True)
        entry = _models.ship(
            self.run_dir,
            "tiny_fomaml",
            models_dir=models_dir,
            eval_protocol="moving_stats",
            hardware="a test machine",
        )
        self.assertEqual(_models.load_manifest(models_dir), [entry])
        self.assertEqual(entry["evaluation"]["protocol"], "moving_stats")
        self.assertEqual(entry["accuracy"], self.summary["results"][2]["mean"])
        self.assertEqual(entry["hardware"], "a test machine")

    def test_only_finished_runs_ship(self):
        unfinished = make_tempdir(self)
        shutil.copy(os.path.join(self.run_dir, "config.json"), unfinished)
        with self.assertRaisesRegex(
            ValueError, r"`run_dir` must be a finished run"
        ):
            _models.ship(unfinished, "x", models_dir=make_tempdir(self))

    def test_the_run_seed_reproduces_the_manifest_figure(self):
        entry = copy.deepcopy(self.entry)
        result = _models.reevaluate(
            entry,
            models_dir=self.models_dir,
            eval_seed=1000,
            data_dir=TINY.data_dir,
        )
        self.assertEqual(result.num_tasks, 4)
        self.assertAlmostEqual(result.mean, entry["accuracy"], places=6)
        self.assertAlmostEqual(result.ci95, entry["ci95"], places=6)

    def test_reevaluate_command_prints_both_figures(self):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.reevaluate_models",
                f"--models_dir={self.models_dir}",
                f"--data_dir={TINY.data_dir}",
                "--num_tasks=6",
            ],
            cwd=support.REPO,
            env=support.python_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        lines = done.stdout.strip().splitlines()
        self.assertLen(lines, 3)  # header, rule, one entry
        self.assertIn("| manifest accuracy | re-evaluated |", lines[0])
        manifest = (
            f"{100 * self.entry['accuracy']:.2f} +- "
            f"{100 * self.entry['ci95']:.2f}% (4 tasks, seed 1000)"
        )
        self.assertIn(manifest, lines[2])
        self.assertRegex(
            lines[2], r"\d+\.\d\d \+- \d+\.\d\d% \(6 tasks, seed 1002\)"
        )
        self.assertTrue(lines[2].startswith("| tiny_fomaml | omniglot"))


class CarriedMomentsTest(absltest.TestCase):
    """A model whose inner Adam carries its moments (the Reptile
    reference's) ships them, and re-evaluates from them."""

    def test_ship_and_reevaluate_with_the_carried_moments(self):
        run_dir = os.path.join(make_tempdir(self), "run")
        config = support.tiny_omniglot(
            iterations=2,
            eval_every=2,
            val_tasks=0,
            algo="reptile",
            inner_optimizer="adam",
            inner_learning_rate=0.01,
            inner_beta_1=0.0,
            inner_moments="carry",
        )
        train.train_and_evaluate(config, run_dir)
        models_dir = make_tempdir(self)
        entry = _models.ship(run_dir, "tiny_reptile", models_dir=models_dir)
        self.assertEqual(
            entry["inner_optimizer_state_file"], "tiny_reptile.inner_state.npz"
        )
        trained = keras.models.load_model(
            os.path.join(run_dir, "checkpoint.keras")
        )
        model = _models.load_meta_model(entry, models_dir)
        self.assertNotEmpty(model.inner_optimizer_state)
        moved = 0.0
        for got, want in zip(
            model.inner_optimizer_state, trained.inner_optimizer_state
        ):
            np.testing.assert_array_equal(got, want)
            moved = max(moved, float(np.abs(np.asarray(want)).max()))
        self.assertGreater(moved, 0.0)  # the moments are not Adam's zeros
        result = _models.reevaluate(
            entry,
            models_dir=models_dir,
            eval_seed=1000,
            data_dir=config.data_dir,
        )
        self.assertAlmostEqual(result.mean, entry["accuracy"], places=6)
        os.remove(os.path.join(models_dir, entry["inner_optimizer_state_file"]))
        with self.assertRaisesRegex(
            ValueError, r"`inner_optimizer_state_file` must be"
        ):
            _models.check_entry(entry, models_dir)


if __name__ == "__main__":
    absltest.main()
