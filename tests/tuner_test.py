"""Tests of keras_ga.tuner: real searches on Omniglot and sine tasks, errors.

The Omniglot search reads the real files from `$KERAS_GA_DATA`, else
`<repo>/../shared/data` (`omniglot/images_background.zip`, ...).
"""

import ast
import shutil
import tempfile
from pathlib import Path

import keras
import keras_tuner
from absl.testing import absltest
from absl.testing import parameterized
from keras_tuner.engine import hyperparameters

import keras_ga
from keras_ga import models
from keras_ga import sampler
from keras_ga import tuner
from keras_ga.datasets import omniglot
from keras_ga.datasets import sine
from tests import support

DATA_DIR = support.data_dir()
WAYS = 5


def flat_mlp():
    """A tiny classifier of flattened 28x28 images (logits)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(WAYS),
        ]
    )


class RecordingHyperModel(tuner.MetaHyperModel):
    """Records the settings of each MetaModel that a trial fits."""

    def __init__(self, build_base, **kwargs):
        self.builds = 0

        def counted():
            self.builds += 1
            return build_base()

        super().__init__(counted, **kwargs)
        self.fits = []

    def fit(self, hp, model, *args, **kwargs):
        history = super().fit(hp, model, *args, **kwargs)
        self.fits.append(
            {
                "values": dict(hp.values),
                "algo": model.algo,
                "inner_steps": model.inner_steps,
                "inner_learning_rate": model.inner_learning_rate,
                "outer_learning_rate": float(model.optimizer.learning_rate),
                "weighting": type(model.weighting).__name__,
                "history": dict(history.history),
            }
        )
        return history


def omniglot_search(directory, max_trials, hypermodel=None):
    hypermodel = hypermodel or RecordingHyperModel(flat_mlp, inner_steps=(1, 2))
    search = keras_tuner.RandomSearch(
        hypermodel,
        objective=hypermodel.objective,
        max_trials=max_trials,
        seed=3,
        directory=directory,
        project_name="omniglot",
    )
    search.search(
        OmniglotSearchTest.train,
        steps_per_epoch=2,
        epochs=1,
        validation_data=OmniglotSearchTest.val,
        verbose=0,
    )
    return search, hypermodel


class OmniglotSearchTest(parameterized.TestCase):
    """One 2-trial RandomSearch on real Omniglot 5-way 1-shot episodes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cache_dir = tempfile.mkdtemp()
        splits = omniglot.load_omniglot(
            "lake", data_dir=DATA_DIR, cache_dir=cls.cache_dir, download=False
        )
        config = dict(ways=WAYS, shots=1, queries=2, meta_batch_size=2)
        cls.train = sampler.few_shot_episodes(
            splits["train"][:200], seed=0, **config
        )
        cls.val = sampler.few_shot_episodes(
            splits["test"][:100], seed=1, num_tasks=4, **config
        )
        cls.directory = tempfile.mkdtemp()
        cls.tuner, cls.hypermodel = omniglot_search(cls.directory, 2)
        cls.trials = list(cls.tuner.oracle.trials.values())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cache_dir)
        shutil.rmtree(cls.directory)
        super().tearDownClass()

    def test_two_trials_completed(self):
        self.assertLen(self.trials, 2)
        for trial in self.trials:
            self.assertEqual(trial.status, "COMPLETED", trial.message)
        self.assertLen(self.hypermodel.fits, 2)

    def test_trials_built_models_of_their_hyperparameters(self):
        values = [t.hyperparameters.values for t in self.trials]
        self.assertNotEqual(values[0], values[1])
        for trial in self.trials:
            hp = trial.hyperparameters.values
            self.assertCountEqual(hp, tuner.SEARCHED)
            (fit,) = [f for f in self.hypermodel.fits if f["values"] == hp]
            self.assertEqual(fit["algo"], hp["algo"])
            self.assertEqual(fit["inner_steps"], hp["inner_steps"])
            self.assertAlmostEqual(
                fit["inner_learning_rate"], hp["inner_learning_rate"]
            )
            self.assertAlmostEqual(
                fit["outer_learning_rate"], hp["outer_learning_rate"], 6
            )
            expected = {"agreement": "AgreementWeighting"}
            self.assertEqual(
                fit["weighting"],
                expected.get(hp["weighting"], "UniformWeighting"),
            )

    def test_objective_is_the_validation_query_accuracy(self):
        objective = self.tuner.oracle.objective
        self.assertEqual(
            (objective.name, objective.direction), ("val_accuracy", "max")
        )
        for trial in self.trials:
            hp = trial.hyperparameters.values
            (fit,) = [f for f in self.hypermodel.fits if f["values"] == hp]
            val_accuracy = fit["history"]["val_accuracy"][-1]
            self.assertAlmostEqual(trial.score, val_accuracy, places=6)
            self.assertAlmostEqual(
                trial.metrics.get_last_value("val_accuracy"), val_accuracy, 6
            )
            # The metric is the adapted one, not the pre-adaptation one.
            self.assertIn("val_pre_accuracy", fit["history"])
            self.assertTrue(0.0 <= trial.score <= 1.0)

    def test_best_hyperparameters_are_those_of_the_best_trial(self):
        best = self.tuner.get_best_hyperparameters()[0].values
        best_score = max(t.score for t in self.trials)
        self.assertIn(best, [t.hyperparameters.values for t in self.trials])
        (trial,) = [t for t in self.trials if t.hyperparameters.values == best]
        self.assertEqual(trial.score, best_score)
        summary = tuner.best_trials(self.tuner, 2)
        self.assertEqual(summary[0]["hyperparameters"], best)
        self.assertEqual(summary[0]["score"], best_score)
        self.assertLen(summary, 2)

    def test_build_from_values_rebuilds_the_best_model(self):
        best = self.tuner.get_best_hyperparameters()[0].values
        model = self.hypermodel.build_from_values(best)
        self.assertEqual(model.algo, best["algo"])
        self.assertEqual(model.inner_steps, best["inner_steps"])
        self.assertAlmostEqual(
            model.inner_learning_rate, best["inner_learning_rate"]
        )

    def test_second_tuner_on_the_same_directory_resumes(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        shutil.copytree(self.directory, directory, dirs_exist_ok=True)
        scores = {t.trial_id: t.score for t in self.trials}
        # Same budget: nothing left to run.
        resumed, hypermodel = omniglot_search(directory, 2)
        self.assertEqual(hypermodel.fits, [])
        self.assertEqual(hypermodel.builds, 0)  # Not even the space probe.
        self.assertEqual(
            {t.trial_id: t.score for t in resumed.oracle.trials.values()},
            scores,
        )
        # One more trial: only the new one runs.
        more, hypermodel = omniglot_search(directory, 3)
        self.assertLen(hypermodel.fits, 1)
        trials = more.oracle.trials
        self.assertLen(trials, 3)
        for trial_id, score in scores.items():
            self.assertEqual(trials[trial_id].score, score)


def sine_data():
    train = sine.sine_tasks(shots=5, queries=5, meta_batch_size=4, seed=0)
    val = sine.sine_tasks(
        shots=5, queries=5, meta_batch_size=4, seed=1, num_tasks=8
    )
    return train, val


class SineSearchTest(parameterized.TestCase):
    def test_hyperband_continues_trials_with_endless_episodes(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        hypermodel = RecordingHyperModel(
            lambda: models.mlp(1, 1, (16,)),
            task="regression",
            inner_steps=1,
            algo="fomaml",
        )
        search = tuner.make_tuner(
            "hyperband",
            hypermodel,
            directory=directory,
            project_name="sine",
            max_epochs=2,
            factor=2,
            seed=0,
        )
        train, val = sine_data()
        search.search(train, steps_per_epoch=2, validation_data=val, verbose=0)
        trials = list(search.oracle.trials.values())
        self.assertEqual(search.oracle.objective.direction, "min")
        continued = [
            t for t in trials if "tuner/trial_id" in t.hyperparameters.values
        ]
        self.assertNotEmpty(continued)
        for trial in trials:
            self.assertEqual(trial.status, "COMPLETED", trial.message)
        for fit in hypermodel.fits:
            epochs = fit["values"]["tuner/epochs"]
            initial = fit["values"]["tuner/initial_epoch"]
            self.assertLen(fit["history"]["val_loss"], epochs - initial)
        best = search.oracle.get_best_trials(1)[0]
        self.assertEqual(best.score, min(t.score for t in trials))
        self.assertEqual(best.score, best.metrics.get_best_value("val_loss"))

    def test_bayesian_optimization_runs(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        hypermodel = RecordingHyperModel(
            lambda: models.mlp(1, 1, (16,)),
            task="regression",
            inner_steps=[1, 2],
        )
        search = tuner.make_tuner(
            "bayesian",
            hypermodel,
            directory=directory,
            project_name="sine",
            max_trials=1,
            seed=0,
        )
        train, val = sine_data()
        search.search(
            train, steps_per_epoch=2, epochs=1, validation_data=val, verbose=0
        )
        (fit,) = hypermodel.fits
        (trial,) = search.oracle.trials.values()
        self.assertEqual(trial.status, "COMPLETED", trial.message)
        self.assertIn(fit["inner_steps"], [1, 2])
        self.assertEqual(fit["inner_steps"], fit["values"]["inner_steps"])
        self.assertAlmostEqual(trial.score, fit["history"]["val_loss"][-1], 6)

    @parameterized.named_parameters(
        (
            "no_steps_per_epoch",
            dict(epochs=1),
            "`steps_per_epoch` is required when `x` is an endless",
        ),
        (
            "no_validation_data",
            dict(steps_per_epoch=1, epochs=1, validation_data=None),
            "`validation_data` is required",
        ),
    )
    def test_fits_that_cannot_end_stop_the_search(self, kwargs, message):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        hypermodel = RecordingHyperModel(
            lambda: models.mlp(1, 1, (4,)), task="regression"
        )
        search = tuner.make_tuner(
            "random", hypermodel, directory=directory, project_name="p"
        )
        train, val = sine_data()
        kwargs = {"validation_data": val, **kwargs}
        with self.assertRaisesRegex(
            keras_tuner.errors.FatalValueError, message
        ):
            search.search(train, verbose=0, **kwargs)
        self.assertEqual(hypermodel.fits, [])

    def test_endless_validation_needs_validation_steps(self):
        hypermodel = tuner.MetaHyperModel(
            lambda: models.mlp(1, 1, (4,)), task="regression"
        )
        hp = keras_tuner.HyperParameters()
        model = hypermodel.build(hp)
        train, _ = sine_data()
        with self.assertRaisesRegex(
            keras_tuner.errors.FatalValueError,
            "`validation_steps` is required when `validation_data` is an "
            "endless",
        ):
            hypermodel.fit(
                hp, model, train, steps_per_epoch=1, validation_data=train
            )


class SpaceTest(parameterized.TestCase):
    def test_objectives(self):
        for task, name, direction in (
            ("classification", "val_accuracy", "max"),
            ("regression", "val_loss", "min"),
        ):
            objective = tuner.meta_objective(task)
            self.assertEqual(objective.name, name)
            self.assertEqual(objective.direction, direction)
            hypermodel = tuner.MetaHyperModel(flat_mlp, task=task)
            self.assertEqual(hypermodel.objective.direction, direction)

    def test_declared_space(self):
        hypermodel = tuner.MetaHyperModel(
            flat_mlp,
            inner_learning_rate=0.4,
            inner_steps=[1, 5],
            algo=("maml", "reptile"),
            weighting="agreement",
        )
        hp = keras_tuner.HyperParameters()
        hypermodel.declare(hp)
        space = {p.name: p for p in hp.space}
        self.assertCountEqual(space, tuner.SEARCHED)
        self.assertIsInstance(
            space["inner_learning_rate"], hyperparameters.Fixed
        )
        self.assertEqual(space["inner_learning_rate"].value, 0.4)
        self.assertEqual(list(space["inner_steps"].values), [1, 5])
        self.assertEqual(list(space["algo"].values), ["maml", "reptile"])
        self.assertEqual(space["weighting"].value, "agreement")
        outer = space["outer_learning_rate"]
        self.assertEqual(outer.sampling, "log")
        self.assertEqual((outer.min_value, outer.max_value), (1e-4, 1e-2))

    def test_equal_range_ends_fix_the_value(self):
        hypermodel = tuner.MetaHyperModel(flat_mlp, inner_steps=(3, 3))
        hp = keras_tuner.HyperParameters()
        self.assertEqual(hypermodel.declare(hp)["inner_steps"], 3)

    def test_user_space_replaces_builtin_entries(self):
        def space(hp):
            return {
                "algo": hp.Choice("algorithm", ["fomaml", "reptile"]),
                "eval_inner_steps": hp.Int("eval_steps", 2, 4),
            }

        hypermodel = tuner.MetaHyperModel(flat_mlp, space=space)
        hp = keras_tuner.HyperParameters()
        hp.values["algorithm"] = "reptile"
        hp.values["eval_steps"] = 4
        model = hypermodel.build(hp)
        self.assertEqual(model.algo, "reptile")
        self.assertEqual(model.eval_inner_steps, 4)
        self.assertNotIn("algo", hp.values)
        self.assertIn("inner_learning_rate", hp.values)

    def test_optimizer_function_and_weighting_object(self):
        hypermodel = tuner.MetaHyperModel(
            flat_mlp,
            outer_learning_rate=0.5,
            optimizer=lambda lr: keras.optimizers.SGD(lr),
            weighting=keras_ga.UniformWeighting(name="plain"),
        )
        hp = keras_tuner.HyperParameters()
        model = hypermodel.build(hp)
        self.assertIsInstance(model.optimizer, keras.optimizers.SGD)
        self.assertAlmostEqual(float(model.optimizer.learning_rate), 0.5)
        self.assertEqual(model.weighting.name, "plain")
        self.assertNotIn("weighting", hp.values)

    def test_only_the_tuner_module_imports_keras_tuner(self):
        # So that `import keras_ga` works without Keras Tuner installed.
        package = Path(tuner.__file__).parent
        importers = []
        for path in sorted(package.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    names = [module] + [
                        f"{module}.{a.name}" for a in node.names
                    ]
                else:
                    continue
                if any(
                    n.split(".")[0] == "keras_tuner" or n == "keras_ga.tuner"
                    for n in names
                ):
                    importers.append(path.name)
        self.assertEqual(set(importers), {"tuner.py"})
        self.assertNotIn("tuner", keras_ga.__all__)

    @parameterized.named_parameters(
        ("empty_algo", dict(algo=[]), "`algo` must not be an empty list"),
        (
            "empty_steps",
            dict(inner_steps=[]),
            "`inner_steps` must not be an empty list",
        ),
        (
            "empty_weighting",
            dict(weighting=()),
            "`weighting` must not be an empty list",
        ),
        (
            "empty_lr",
            dict(outer_learning_rate=[]),
            "`outer_learning_rate` must not be an empty list",
        ),
        (
            "lr_min_above_max",
            dict(inner_learning_rate=(1.0, 0.1)),
            r"`inner_learning_rate` range must have low <= high. Received: inner_learning_rate=\(1.0, 0.1\)",
        ),
        (
            "steps_min_above_max",
            dict(inner_steps=(5, 1)),
            "`inner_steps` range must have low <= high",
        ),
        (
            "zero_lr_log",
            dict(outer_learning_rate=(0.0, 0.1)),
            r"`outer_learning_rate` values must be positive finite numbers \(learning rates are searched on a log scale\). Received: outer_learning_rate=\(0.0, 0.1\)",
        ),
        (
            "negative_lr",
            dict(inner_learning_rate=-0.1),
            "`inner_learning_rate` values must be positive finite",
        ),
        (
            "negative_lr_choice",
            dict(inner_learning_rate=[0.1, -0.1]),
            "`inner_learning_rate` values must be positive finite",
        ),
        (
            "zero_steps",
            dict(inner_steps=(0, 3)),
            "`inner_steps` values must be positive integers",
        ),
        (
            "float_steps",
            dict(inner_steps=[1, 2.5]),
            "`inner_steps` values must be positive integers",
        ),
        (
            "bad_range",
            dict(inner_steps=(1, 2, 3)),
            r"`inner_steps` range must be a pair \(low, high\) of numbers",
        ),
        (
            "unknown_algo",
            dict(algo=["maml", "sgd"]),
            r"`algo` must be one of \['maml', 'fomaml', 'reptile'\] or a list of them; unknown: \['sgd'\]",
        ),
        ("unknown_fixed_algo", dict(algo="anil"), "`algo` must be one of"),
        (
            "unknown_weighting",
            dict(weighting=["uniform", "median"]),
            r"`weighting` must be one of \['agreement', 'uniform'\]",
        ),
        (
            "task",
            dict(task="ranking"),
            r"`task` must be one of \['classification', 'regression'\]. Received: task='ranking'",
        ),
        (
            "metrics",
            dict(metrics=["mse"]),
            "`metrics` must include 'accuracy' for classification",
        ),
        (
            "model_kwargs",
            dict(model_kwargs={"algo": "maml"}),
            "`model_kwargs` keys must be among",
        ),
        (
            "space_algo",
            dict(space=lambda hp: {"algo": hp.Choice("a", ["maml", "sgd"])}),
            r"`algo` must be one of .*unknown: \['sgd'\]",
        ),
        (
            "space_keys",
            dict(space=lambda hp: {"alpha": 0.1}),
            r"`space\(hp\)` returned unknown keys \['alpha'\]",
        ),
        (
            "space_lr",
            dict(space=lambda hp: {"inner_learning_rate": 0.0}),
            "`inner_learning_rate` values must be positive",
        ),
    )
    def test_bad_configuration_raises_before_any_build(self, kwargs, message):
        builds = []
        with self.assertRaisesRegex(ValueError, message):
            tuner.MetaHyperModel(lambda: builds.append(1), **kwargs)
        self.assertEqual(builds, [])

    @parameterized.named_parameters(
        (
            "build_base",
            dict(build_base=None),
            "`build_base` must be a function",
        ),
        (
            "lr_type",
            dict(inner_learning_rate="fast"),
            "`inner_learning_rate` must be a positive number",
        ),
        ("algo_type", dict(algo=3), "`algo` must be one of"),
        ("weighting_type", dict(weighting=3), "`weighting` must be one of"),
        (
            "space_type",
            dict(space="maml"),
            r"`space` must be a function `space\(hp\) -> dict`",
        ),
        (
            "space_result",
            dict(space=lambda hp: ["maml"]),
            r"`space\(hp\)` must return a dict",
        ),
    )
    def test_bad_types_raise(self, kwargs, message):
        kwargs = {"build_base": flat_mlp, **kwargs}
        with self.assertRaisesRegex(TypeError, message):
            tuner.MetaHyperModel(**kwargs)

    def test_unknown_tuner_kind(self):
        hypermodel = tuner.MetaHyperModel(flat_mlp)
        with self.assertRaisesRegex(
            ValueError,
            r"`kind` must be one of \['random', 'bayesian', 'hyperband'\]. "
            "Received: kind='grid'",
        ):
            tuner.make_tuner(
                "grid", hypermodel, directory="unused", project_name="p"
            )


if __name__ == "__main__":
    absltest.main()
