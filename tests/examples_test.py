"""End-to-end runs of the example scripts with tiny settings, on real data."""

import csv
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
from PIL import Image

import keras_ga
from examples import _common
from examples import configs
from examples import train
from examples.configs import miniimagenet
from examples.configs import omniglot
from examples.configs import sine
from tests import support

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = str(support.data_dir())


def make_tempdir(test):
    # absltest's create_tempdir needs parsed flags, which pytest skips.
    path = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_few_shot(presets, **kwargs):
    return dataclasses.replace(
        presets.PRESETS["fomaml_5way_1shot"],
        ways=3,
        shots=1,
        queries=1,
        eval_queries=1,
        meta_batch_size=2,
        iterations=2,
        eval_every=1,
        val_tasks=2,
        eval_tasks=4,
        eval_batch_size=2,
        filters=4,
        **kwargs,
    )


def check_few_shot_outputs(test, output_dir, summary, dataset):
    test.assertEqual(summary["dataset"], dataset)
    with open(os.path.join(output_dir, "results.json")) as f:
        written = json.load(f)
    modes = [r["protocol"] for r in written["results"]]
    test.assertEqual(
        modes, ["transductive", "support_plus_query", "moving_stats"]
    )
    for r in written["results"]:
        test.assertEqual(r["num_tasks"], 4)
        test.assertEqual(r["metric"], "accuracy")
        test.assertBetween(r["mean"], 0.0, 1.0)
        test.assertLen(r["per_task"], 4)
        test.assertAlmostEqual(np.mean(r["per_task"]), r["mean"], places=6)
    test.assertLen(written["history"]["loss"], 2)  # two epochs of 1 step
    test.assertIn("val_accuracy", written["history"])
    for name in ("history.csv", "checkpoint.keras", "config.json"):
        test.assertTrue(os.path.exists(os.path.join(output_dir, name)), name)
    test.assertNotEmpty(os.listdir(os.path.join(output_dir, "tensorboard")))
    with open(os.path.join(output_dir, "results.md")) as f:
        test.assertLen(
            f.read().strip().splitlines(), 5
        )  # header + rule + 3 protocols


def write_mini_imagenet(root, classes=3, per_class=4, size=16):
    """Real split-file rows (a subset) with generated images."""
    folder = os.path.join(root, "miniimagenet")
    os.makedirs(os.path.join(folder, "images"))
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        with open(os.path.join(DATA, "miniimagenet", f"{split}.csv")) as f:
            rows = list(csv.reader(f))[1:]
        labels = sorted({label for _, label in rows})[:classes]
        keep = [r for r in rows if r[1] in labels]
        keep = [r for label in labels for r in keep if r[1] == label]
        keep = [r for i, r in enumerate(keep) if i % 600 < per_class]
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            writer.writerows(keep)
        for filename, _ in keep:
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(
                os.path.join(folder, "images", filename)
            )


def run_python(*args, timeout):
    """`python *args` in a fresh process at the repository root."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class FewShotExamplesTest(absltest.TestCase):
    def test_omniglot_on_real_data(self):
        output_dir = make_tempdir(self)
        config = tiny_few_shot(omniglot, data_dir=DATA)
        summary = train.train_and_evaluate(config, output_dir)
        check_few_shot_outputs(self, output_dir, summary, "omniglot")
        self.assertEqual(summary["config"]["eval_inner_steps"], 3)

    def test_miniimagenet_on_real_split_files(self):
        root = make_tempdir(self)
        write_mini_imagenet(root)
        output_dir = os.path.join(root, "out")
        config = tiny_few_shot(miniimagenet, data_dir=root, image_size=16)
        summary = train.train_and_evaluate(config, output_dir)
        check_few_shot_outputs(self, output_dir, summary, "miniimagenet")
        self.assertEqual(summary["config"]["eval_inner_steps"], 10)

    def test_algorithm_defaults_follow_the_papers(self):
        maml = omniglot.PRESETS["maml_20way_1shot"]
        self.assertEqual(
            (maml.meta_batch_size, maml.inner_steps, maml.inner_learning_rate),
            (16, 5, 0.1),
        )
        reptile = miniimagenet.PRESETS["reptile_5way_5shot"]
        self.assertEqual(
            (reptile.meta_batch_size, reptile.eval_inner_steps), (5, 88)
        )


class ReptileReferenceTest(parameterized.TestCase):
    """The Reptile presets are the reference's commands, built as such."""

    # openai/supervised-reptile README: (train-shots, inner-batch,
    # inner-iters, learning-rate, meta-step, meta-batch, meta-iters,
    # eval-batch, eval-iters), all with --meta-step-final 0.
    @parameterized.parameters(
        ("reptile_5way_1shot", 5, 1, (15, 25, 3, 1e-3, 1, 10, 100000, 25, 5)),
        (
            "reptile_5way_1shot_nontrans",
            5,
            1,
            (12, 5, 12, 4.4e-4, 1, 3, 200000, 5, 86),
        ),
        (
            "reptile_5way_5shot",
            5,
            5,
            (10, 10, 5, 1.5e-3, 0.7, 5, 100000, 6, 100),
        ),
        (
            "reptile_20way_1shot",
            20,
            1,
            (9, 15, 12, 4.6e-4, 1, 3, 200000, 10, 97),
        ),
        (
            "reptile_20way_5shot",
            20,
            5,
            (12, 20, 12, 4.6e-4, 1, 3, 200000, 10, 97),
        ),
    )
    def test_omniglot_preset_is_the_reference_command(
        self, name, ways, shots, flags
    ):
        c = omniglot.PRESETS[name]
        self.assertEqual((c.ways, c.shots, c.algo), (ways, shots, "reptile"))
        self.assertEqual(
            (
                c.train_shots,
                c.inner_batch_size,
                c.inner_steps,
                c.inner_learning_rate,
                c.outer_learning_rate,
                c.meta_batch_size,
                c.iterations,
                c.eval_inner_batch_size,
                c.eval_inner_steps,
            ),
            flags,
        )
        self.assertEqual(
            (c.inner_optimizer, c.inner_beta_1, c.inner_moments),
            ("adam", 0.0, "carry"),
        )
        self.assertEqual(
            (c.outer_optimizer, c.outer_schedule), ("sgd", "linear")
        )
        self.assertEqual((c.downsample, c.eval_queries), ("stride", 1))

    def test_model_and_optimizers_of_the_reference(self):
        config = dataclasses.replace(
            omniglot.PRESETS["reptile_5way_1shot"], iterations=100
        )
        model = train.build_few_shot_model(config)
        inner = model.inner_optimizer
        self.assertEqual((inner.beta_1, inner.moments), (0.0, "carry"))
        self.assertEqual(model.inner_batch_size, 25)
        self.assertEqual(model.eval_inner_batch_size, 25)
        convs = [layer for layer in model.base.layers if "conv" in layer.name]
        self.assertLen(convs, 4)
        self.assertTrue(all(layer.strides == (2, 2) for layer in convs))
        names = [layer.name for layer in model.base.layers]
        self.assertNotIn("pool0", names)
        self.assertIn("flatten", names)
        outer = model.optimizer
        self.assertIsInstance(outer, keras.optimizers.SGD)
        # The meta-step: 1 at the first meta-step, linearly to 0 at the last.
        for step, rate in ((0, 1.0), (50, 0.5), (100, 0.0)):
            outer.iterations.assign(step)
            self.assertAlmostEqual(float(outer.learning_rate), rate, places=6)

    def test_training_tasks_take_train_shots(self):
        config = tiny_few_shot(omniglot, data_dir=DATA, train_shots=4)
        first = next(iter(train.training_tasks(config)))
        self.assertEqual(first["support_x"].shape[:2], (2, 3 * 4))
        test = next(iter(train.fixed_tasks(config, "test", 2, seed=0)))
        self.assertEqual(test["support_x"].shape[:2], (2, 3 * 1))

    def test_lake_protocol_splits_background_and_evaluation(self):
        lake = tiny_few_shot(omniglot, data_dir=DATA, protocol="lake")
        first = next(iter(train.training_tasks(lake)))
        self.assertEqual(first["support_x"].shape[:2], (2, 3))
        with self.assertRaisesRegex(ValueError, "`protocol`.*miniimagenet"):
            tiny_few_shot(miniimagenet, protocol="lake")

    def test_within_alphabet_tasks(self):
        config = tiny_few_shot(
            omniglot, data_dir=DATA, protocol="lake", within_alphabet=True
        )
        self.assertIn("--within_alphabet=true", train.command_line(config, "x"))
        task = next(iter(train.fixed_tasks(config, "test", 2, seed=0)))
        self.assertEqual(task["support_x"].shape[:2], (2, 3))
        with self.assertRaisesRegex(ValueError, "`within_alphabet`.*Omniglot"):
            tiny_few_shot(miniimagenet, within_alphabet=True)

    def test_bad_batch_sizes_are_refused(self):
        with self.assertRaisesRegex(ValueError, "`train_shots`.*Received"):
            tiny_few_shot(omniglot, train_shots=0)
        with self.assertRaisesRegex(ValueError, "`inner_batch_size`"):
            tiny_few_shot(omniglot, inner_batch_size=-1)


class SineExampleTest(absltest.TestCase):
    def test_training_tasks_take_train_shots_in_inner_mini_batches(self):
        config = dataclasses.replace(
            sine.PRESETS[sine.DEFAULT], train_shots=30, inner_batch_size=6
        )
        batch = next(iter(train.training_tasks(config)))
        self.assertEqual(
            batch["support_x"].shape, (config.meta_batch_size, 30, 1)
        )
        model = train.build_sine_model(config, "uniform")
        self.assertEqual(model.inner_batch_size, 6)
        self.assertEqual(model.eval_inner_batch_size, config.shots)
        test = next(iter(train._sine_test_tasks(config, 10, seed=0)))
        self.assertEqual(test["support_x"].shape[1], config.shots)
        unset = dataclasses.replace(
            config, train_shots=None, inner_batch_size=None
        )
        self.assertEqual(
            train.build_sine_model(unset, "uniform").inner_batch_size, 10
        )
        with self.assertRaisesRegex(ValueError, "`train_shots`.*Received"):
            dataclasses.replace(config, train_shots=0)

    def test_train_and_evaluate(self):
        output_dir = make_tempdir(self)
        config = dataclasses.replace(
            sine.PRESETS[sine.DEFAULT],
            hidden=8,
            iterations=4,
            eval_every=2,
            val_tasks=4,
            eval_tasks=10,
        )
        summary = train.train_and_evaluate(config, output_dir)
        with open(os.path.join(output_dir, "results.json")) as f:
            written = json.load(f)
        self.assertEqual(sorted(written["runs"]), ["agreement", "uniform"])
        for run in written["runs"].values():
            self.assertEqual(run["result"]["metric"], "mse")
            self.assertEqual(run["result"]["num_tasks"], 10)
            self.assertLen(run["history"]["loss"], 2)
        self.assertEqual(summary["before_training"]["steps"], 5)
        difference = (
            written["runs"]["agreement"]["result"]["mean"]
            - (written["runs"]["uniform"]["result"]["mean"])
        )
        self.assertAlmostEqual(
            written["agreement_minus_uniform"]["mean"], difference, places=6
        )
        for png in ("figure1.png", "curves.png"):
            with open(os.path.join(output_dir, png), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        for run in ("reptile_uniform", "reptile_agreement"):
            path = os.path.join(output_dir, run, "checkpoint.keras")
            self.assertTrue(os.path.exists(path), path)
        # One entry per evaluation: each model at 5 and at 32 test steps.
        self.assertEqual(
            [(e["model"], e["steps"]) for e in written["evaluations"]],
            [
                (model, steps)
                for steps in (5, 32)
                for model in ("before training", "uniform", "agreement")
            ],
        )
        for entry in written["evaluations"]:
            self.assertEqual(entry["num_tasks"], 10)
            self.assertEqual(entry["protocol"], "transductive")
            self.assertGreater(entry["ci95"], 0.0)
        means = {
            (e["model"], e["steps"]): e["mean"] for e in written["evaluations"]
        }
        for d in written["paired_differences"]:
            self.assertAlmostEqual(
                d["mean"],
                means["agreement", d["steps"]] - means["uniform", d["steps"]],
                places=6,
            )
        self.assertEqual(
            written["paired_differences"][0]["mean"],
            written["agreement_minus_uniform"]["mean"],
        )
        # The agreement weights of the probe tasks: before training and
        # after each of the two epochs, 20 meta-batches of 10 tasks each.
        weights = written["agreement_weights"]
        self.assertEqual([w["epoch"] for w in weights], [-1, 0, 1])
        for w in weights:
            self.assertBetween(w["negative_fraction"], 0.0, 1.0)
            self.assertBetween(w["corr_weight_amplitude"], -1.0, 1.0)
        path = os.path.join(output_dir, "reptile_agreement", "weights.json")
        with open(path) as f:
            records = json.load(f)
        self.assertLen(records, 3)
        for record, summary in zip(records, weights):
            self.assertLen(record["amplitude"], 200)
            per_batch = np.reshape(record["weight"], (20, 10))
            # Eq. 13: sum_i w_i <= 1, with equality when no score is < 0.
            self.assertTrue(np.all(per_batch.sum(axis=1) <= 1.0 + 1e-5))
            order = np.argsort(record["amplitude"])
            low = np.asarray(record["weight"])[order[:40]]
            high = np.asarray(record["weight"])[order[-40:]]
            self.assertAlmostEqual(summary["mean_weight_low_fifth"], low.mean())
            self.assertAlmostEqual(
                summary["high_to_low_amplitude_abs_weight"],
                np.abs(high).mean() / np.abs(low).mean(),
            )
        with open(os.path.join(output_dir, "weights.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(output_dir, "results.md")) as f:
            table = f.read()
        self.assertIn("| Reptile | 4 | 10 | 32 |", table)
        self.assertIn("- 32 test steps: ", table)

    def test_main_with_flags(self):
        output_dir = make_tempdir(self)
        flags = [
            "--hidden=4",
            "--iterations=2",
            "--eval_every=1",
            "--val_tasks=0",
            "--eval_tasks=5",
            "--corrupt_fraction=0.2",
            "--corruption=noise",
            f"--output_dir={output_dir}",
        ]
        done = run_python("-m", "examples.sine", *flags, timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        self.assertIn("| Reptile + gradient agreement | 2 |", done.stdout)
        with open(os.path.join(output_dir, "results.json")) as f:
            written = json.load(f)
        self.assertEqual(written["config"]["corrupt_fraction"], 0.2)
        self.assertEqual(written["config"]["corruption"], "noise")
        self.assertIn("--corrupt_fraction=0.2", written["command"])


PRESET_MODULES = {"omniglot": omniglot, "miniimagenet": miniimagenet}
PRESET_NAME = re.compile(
    r"(?P<algo>[a-z]+?)(?P<pp>pp)?_(?P<ways>\d+)way_(?P<shots>\d+)shot"
    r"(_nontrans)?"
)


def example_flags(presets, *argv):
    values = flags.FlagValues()
    _common.define_flags(presets, values)
    values(["example", "--output_dir=unused", *argv])
    return values


class PresetTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("omniglot", omniglot), ("miniimagenet", miniimagenet), ("sine", sine)
    )
    def test_presets_are_distinct_named_configs(self, presets):
        self.assertIn(presets.DEFAULT, presets.PRESETS)
        values = list(presets.PRESETS.values())
        for i, config in enumerate(values):
            self.assertIsInstance(
                config, (configs.FewShotConfig, configs.SineConfig)
            )
            self.assertNotIn(config, values[:i])

    @parameterized.named_parameters(
        ("omniglot", "omniglot"), ("miniimagenet", "miniimagenet")
    )
    def test_few_shot_preset_names_state_their_setting(self, dataset):
        presets = PRESET_MODULES[dataset]
        for name, config in presets.PRESETS.items():
            setting = PRESET_NAME.fullmatch(name)
            self.assertIsNotNone(setting, name)
            self.assertEqual(
                (config.algo, config.ways, config.shots, config.dataset),
                (
                    setting["algo"],
                    int(setting["ways"]),
                    int(setting["shots"]),
                    dataset,
                ),
                name,
            )

    @parameterized.parameters(5, 20)
    def test_maml_plus_plus_presets(self, ways):
        """The MAML++ reference's omniglot_maml++ configuration."""
        config = omniglot.PRESETS[f"mamlpp_{ways}way_1shot"]
        self.assertEqual(
            (
                config.algo,
                config.ways,
                config.shots,
                config.queries,
                config.meta_batch_size,
                config.inner_steps,
                config.eval_inner_steps,
                config.inner_learning_rate,
                config.learn_inner_rates,
                config.multi_step_loss_epochs,
                config.first_order_epochs,
                config.outer_learning_rate,
                config.outer_schedule,
                config.outer_min_learning_rate,
                config.iterations,
                config.eval_every,
                config.downsample,
                config.per_step_batch_norm,
            ),
            (
                "maml",
                ways,
                1,
                1,
                8,
                5,
                5,
                0.1,
                "per_layer_per_step",
                10,
                0,
                1e-3,
                "cosine",
                1e-5,
                50000,
                500,
                "max_pool",
                "statistics_and_weights",
            ),
        )

    def test_maml_plus_plus_options_reach_the_model_and_fit(self):
        config = dataclasses.replace(
            tiny_few_shot(omniglot),
            inner_steps=2,
            learn_inner_rates="per_layer_per_step",
            adapt_layers="logits",
            multi_step_loss_epochs=3,
            first_order_epochs=1,
            outer_schedule="cosine",
            outer_min_learning_rate=1e-5,
            per_step_batch_norm="statistics_and_weights",
        )
        model = train.build_few_shot_model(config)
        self.assertEqual(
            [tuple(r.shape) for r in model.inner_rates], [(2,)] * 2
        )
        norms = [
            layer
            for layer in model.base.layers
            if isinstance(layer, keras_ga.layers.BatchNormalization)
        ]
        self.assertLen(norms, 4)
        steps = max(config.inner_steps, config.eval_inner_steps)
        for layer in norms:
            self.assertEqual(
                (layer.steps, layer.per_step_weights), (steps, True)
            )
        self.assertEqual(model.adapt_layers, ("logits",))
        self.assertTrue(model.multi_step_loss)
        schedule = keras.optimizers.schedules.deserialize(
            model.optimizer.get_config()["learning_rate"]
        )
        self.assertIsInstance(schedule, keras.optimizers.schedules.CosineDecay)
        self.assertAlmostEqual(
            float(schedule(config.iterations)), 1e-5, places=9
        )
        kinds = [type(c) for c in train.annealing_callbacks(config)]
        self.assertEqual(
            kinds,
            [
                keras_ga.callbacks.MultiStepLossAnnealing,
                keras_ga.callbacks.DerivativeOrderAnnealing,
            ],
        )
        self.assertEqual(train.annealing_callbacks(tiny_few_shot(omniglot)), [])

    def test_default_presets_keep_the_former_defaults(self):
        few_shot = omniglot.PRESETS[omniglot.DEFAULT]
        self.assertEqual(
            (few_shot.algo, few_shot.weighting, few_shot.ways, few_shot.shots),
            ("maml", "agreement", 5, 1),
        )
        self.assertEqual(
            (
                few_shot.meta_batch_size,
                few_shot.inner_steps,
                few_shot.eval_inner_steps,
                few_shot.inner_learning_rate,
                few_shot.iterations,
            ),
            (32, 1, 3, 0.4, 60000),
        )
        mini = miniimagenet.PRESETS[miniimagenet.DEFAULT]
        self.assertEqual(
            (mini.meta_batch_size, mini.inner_steps, mini.eval_inner_steps),
            (4, 5, 10),
        )
        self.assertEqual(
            (mini.queries, mini.filters, mini.image_size), (15, 32, 84)
        )
        self.assertEqual(sine.PRESETS[sine.DEFAULT], configs.SineConfig())

    def test_unknown_choice_in_a_config_is_refused(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`algo` must be one of \('maml', 'fomaml', 'reptile'\)\. "
            r"Received: algo='mmal'\.",
        ):
            dataclasses.replace(
                omniglot.PRESETS["maml_5way_1shot"], algo="mmal"
            )

    def test_train_and_evaluate_refuses_other_configs(self):
        with self.assertRaisesRegex(TypeError, r"`config` must be a"):
            train.train_and_evaluate({"algo": "maml"}, "unused")

    def test_divisor(self):
        self.assertEqual(train.divisor(600, 20), 20)
        self.assertEqual(train.divisor(100, 30), 25)
        self.assertEqual(train.divisor(7, 5), 1)
        self.assertEqual(train.divisor(4, 20), 4)


class ExampleFlagsTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("omniglot", omniglot), ("miniimagenet", miniimagenet), ("sine", sine)
    )
    def test_no_flags_give_the_default_preset(self, presets):
        config = _common.config_from_flags(presets, example_flags(presets))
        self.assertEqual(config, presets.PRESETS[presets.DEFAULT])

    def test_flags_override_the_chosen_preset_field_by_field(self):
        values = example_flags(
            omniglot,
            "--preset=reptile_20way_1shot",
            "--inner_steps=2",
            "--weighting=uniform",
            "--non_transductive=false",
        )
        config = _common.config_from_flags(omniglot, values)
        self.assertEqual(
            config,
            dataclasses.replace(
                omniglot.PRESETS["reptile_20way_1shot"],
                inner_steps=2,
                weighting="uniform",
                non_transductive=False,
            ),
        )

    def test_the_dataset_is_not_a_flag(self):
        self.assertNotIn("dataset", example_flags(omniglot))

    @parameterized.product(
        presets=(omniglot, miniimagenet, sine),
        flag=("--algo=mmal", "--preset=maml_5way"),
    )
    def test_bad_choice_flags_are_usage_errors(self, presets, flag):
        with self.assertRaisesRegex(
            flags.IllegalFlagValueError, r"value should be one of <"
        ):
            example_flags(presets, flag)

    def test_bad_weighting_flag(self):
        with self.assertRaisesRegex(
            flags.IllegalFlagValueError,
            r"--weighting=mean: value should be one of <uniform\|agreement>",
        ):
            example_flags(miniimagenet, "--weighting=mean")

    def test_every_flag_has_a_real_help_text(self):
        values = example_flags(omniglot)
        for name in ("algo", "weighting", "ways", "inner_learning_rate"):
            self.assertGreater(len(values[name].help.split()), 5, name)
            self.assertNotEqual(values[name].help, name)

    def test_bad_algo_stops_the_script_before_data_loads(self):
        root = make_tempdir(self)
        output_dir = os.path.join(root, "out")
        done = run_python(
            "-m",
            "examples.omniglot",
            "--algo=mmal",
            f"--data_dir={root}",  # empty: no data to load
            f"--output_dir={output_dir}",
            timeout=300,
        )
        self.assertEqual(done.returncode, 1, done.stderr[-2000:])
        self.assertIn(
            "flag --algo=mmal: value should be one of <maml|fomaml|reptile>",
            done.stderr,
        )
        self.assertFalse(os.path.exists(output_dir))


class ResumeAndCorruptionSettingsTest(parameterized.TestCase):
    def test_checkpoint_every_is_an_optional_integer_flag(self):
        self.assertIsNone(example_flags(omniglot).checkpoint_every)
        values = example_flags(omniglot, "--checkpoint_every=250")
        config = _common.config_from_flags(omniglot, values)
        self.assertEqual(config.checkpoint_every, 250)

    def test_corruption_flags(self):
        values = example_flags(
            sine, "--corrupt_fraction=0.2", "--corruption=wrong_function"
        )
        config = _common.config_from_flags(sine, values)
        self.assertEqual(
            (config.corrupt_fraction, config.corruption),
            (0.2, "wrong_function"),
        )
        values = example_flags(omniglot, "--corruption=permute")
        self.assertEqual(
            _common.config_from_flags(omniglot, values).corruption, "permute"
        )
        with self.assertRaisesRegex(
            flags.IllegalFlagValueError,
            r"--corruption=noise: value should be one of <shuffle\|permute>",
        ):
            example_flags(omniglot, "--corruption=noise")

    def test_checkpoint_every_must_divide_eval_every(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`checkpoint_every` must be a positive divisor of `eval_every` "
            r"\(1000\).*Received: checkpoint_every=300\.",
        ):
            dataclasses.replace(
                sine.PRESETS["reptile_10shot"], checkpoint_every=300
            )

    def test_corrupt_fraction_must_be_a_probability(self):
        with self.assertRaisesRegex(
            ValueError,
            r"`corrupt_fraction` must be in \[0, 1\]\. "
            r"Received: corrupt_fraction=1\.5\.",
        ):
            dataclasses.replace(
                omniglot.PRESETS["maml_5way_1shot"], corrupt_fraction=1.5
            )

    def test_omniglot_training_tasks_are_corrupted_as_configured(self):
        clean = tiny_few_shot(omniglot, data_dir=DATA)
        corrupted = dataclasses.replace(
            clean, corrupt_fraction=1.0, corruption="permute"
        )
        a = next(iter(train.training_tasks(clean, start=3)))
        b = next(iter(train.training_tasks(corrupted, start=3)))
        np.testing.assert_array_equal(a["support_y"], b["support_y"])
        np.testing.assert_array_equal((a["query_y"] + 1) % 3, b["query_y"])
        np.testing.assert_array_equal(a["query_x"], b["query_x"])

    def test_corrupted_run_records_the_corrupted_tasks_weights(self):
        config = tiny_few_shot(
            omniglot,
            data_dir=DATA,
            corrupt_fraction=0.5,
            corruption="permute",
            non_transductive=False,
        )
        workdir = make_tempdir(self)
        summary = train.train_and_evaluate(config, workdir)
        with open(os.path.join(workdir, "weights.json")) as f:
            records = json.load(f)
        # Before training, then after each of the two epochs.
        self.assertEqual([r["epoch"] for r in records], [-1, 0, 1])
        flags = keras_ga.sampler.corrupted_tasks(
            config.eval_seed + 2, 20 * 2, 0.5
        )
        self.assertTrue(0 < flags.sum() < flags.size)
        for record, row in zip(records, summary["corruption_weights"]):
            np.testing.assert_array_equal(record["corrupted"], flags)
            weight = np.asarray(record["weight"])
            self.assertLen(weight, 40)
            self.assertEqual(row["corrupted_fraction"], flags.mean())
            self.assertAlmostEqual(
                row["corrupted_weight_share"],
                weight[flags].sum() / weight.sum(),
                places=6,
            )
            self.assertAlmostEqual(
                row["mean_weight_clean"], weight[~flags].mean(), places=6
            )
        # Stopped after training, before results.json: the resumed run
        # trains no epoch and reports the records the first piece wrote.
        os.remove(os.path.join(workdir, "results.json"))
        resumed = train.train_and_evaluate(config, workdir)
        self.assertEqual(
            resumed["corruption_weights"], summary["corruption_weights"]
        )

    def test_corruption_summary(self):
        records = [
            {
                "epoch": 3,
                "weight": [0.5, -0.1, 0.4, 0.2],
                "corrupted": [0.0, 1.0, 0.0, 1.0],
            }
        ]
        (row,) = train.corruption_summary(records)
        self.assertEqual(row["epoch"], 3)
        self.assertEqual(row["corrupted_fraction"], 0.5)
        self.assertAlmostEqual(row["corrupted_weight_share"], 0.1 / 1.0)
        self.assertAlmostEqual(row["mean_weight_corrupted"], 0.05)
        self.assertAlmostEqual(row["mean_weight_clean"], 0.45)
        self.assertEqual(row["negative_fraction_corrupted"], 0.5)
        self.assertEqual(row["negative_fraction_clean"], 0.0)

    def test_sine_training_tasks_are_corrupted_as_configured(self):
        clean = sine.PRESETS[sine.DEFAULT]
        corrupted = dataclasses.replace(
            clean, corrupt_fraction=1.0, corruption="wrong_function"
        )
        a = next(iter(train.training_tasks(clean)))
        b = next(iter(train.training_tasks(corrupted)))
        np.testing.assert_allclose(
            b["support_y"], a["support_y"] + 6.0, atol=1e-5
        )
        self.assertEqual(b["support_y"].shape, (10, 50, 1))

    @parameterized.named_parameters(
        ("omniglot", omniglot, "reptile_20way_1shot"),
        ("miniimagenet", miniimagenet, "maml_5way_5shot"),
        ("sine", sine, "reptile_10shot"),
    )
    def test_command_line_gives_back_the_config(self, presets, preset):
        config = dataclasses.replace(
            presets.PRESETS[preset],
            iterations=123,
            checkpoint_every=10,
            corrupt_fraction=0.25,
            eval_every=20,
        )
        command = train.command_line(config, "/tmp/a run")
        self.assertTrue(command.startswith("python -m examples."))
        self.assertIn(f"--preset={preset}", command)
        self.assertIn("--output_dir='/tmp/a run'", command)
        argv = shlex.split(command)[3:-1]
        values = example_flags(presets, *argv)
        self.assertEqual(_common.config_from_flags(presets, values), config)

    def test_machine_names_the_cpu(self):
        self.assertIn("logical cores", train.machine())


class ThreadFlagTest(absltest.TestCase):
    """`--set_cpu_threads` (the subprocess run of examples.sine applies it)."""

    def flag_values(self, *argv):
        values = flags.FlagValues()
        _common.define_thread_flag(values)
        values(["example", *argv])
        return values

    def test_defaults_to_on(self):
        self.assertTrue(self.flag_values().set_cpu_threads)

    def test_started_runtime_keeps_its_split_with_a_warning(self):
        # A fresh process, whose runtime starts with TF's default split.
        code = (
            "import tensorflow as tf\n"
            "from absl import flags\n"
            "from examples import _common\n"
            "values = flags.FlagValues()\n"
            "_common.define_thread_flag(values)\n"
            "values(['example'])\n"
            "float(tf.reduce_sum(tf.ones([2])))\n"
            "_common.configure_threads(values)\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads())\n"
        )
        done = run_python("-c", code, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        self.assertIn("Keeping TensorFlow's thread split", done.stderr)
        self.assertEqual(done.stdout.split(), ["0"])

    def test_off_changes_nothing(self):
        float(tf.reduce_sum(tf.ones([2])))
        before = tf.config.threading.get_intra_op_parallelism_threads()
        with self.assertNoLogs(level="WARNING"):
            _common.configure_threads(self.flag_values("--noset_cpu_threads"))
        self.assertEqual(
            tf.config.threading.get_intra_op_parallelism_threads(), before
        )


if __name__ == "__main__":
    absltest.main()
