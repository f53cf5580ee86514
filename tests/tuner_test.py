"""Tests of keras_ga.tuner: real searches on Omniglot and sine tasks, errors.

The Omniglot search reads the real files from `$KERAS_GA_DATA`, else
`<repo>/../shared/data` (`omniglot/images_background.zip`, ...).
"""

import ast
import importlib
import inspect
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

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
SEARCHED = (
    "algo",
    "weighting",
    "inner_steps",
    "inner_learning_rate",
    "outer_learning_rate",
)


def fixed(**entries):
    """HyperParameters fixing or narrowing entries: a value, list or range."""
    hp = keras_tuner.HyperParameters()
    for name, value in entries.items():
        if isinstance(value, list):
            hp.Choice(name, value)
        elif isinstance(value, tuple):
            hp.Int(name, *value)
        else:
            hp.Fixed(name, value)
    return hp


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


def omniglot_search(directory, max_trials):
    hypermodel = RecordingHyperModel(flat_mlp)
    search = keras_tuner.RandomSearch(
        hypermodel,
        objective=hypermodel.objective,
        max_trials=max_trials,
        hyperparameters=fixed(inner_steps=(1, 2)),
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
            self.assertCountEqual(hp, SEARCHED)
            (fit,) = [f for f in self.hypermodel.fits if f["values"] == hp]
            self.assertEqual(fit["algo"], hp["algo"])
            self.assertEqual(fit["inner_steps"], hp["inner_steps"])
            self.assertIn(hp["inner_steps"], [1, 2])  # The range given.
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
            lambda: models.mlp(1, 1, (16,)), task="regression"
        )
        search = tuner.make_tuner(
            "hyperband",
            hypermodel,
            directory=directory,
            project_name="sine",
            max_epochs=2,
            factor=2,
            seed=0,
            hyperparameters=fixed(inner_steps=1, algo="fomaml"),
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
            self.assertEqual((fit["algo"], fit["inner_steps"]), ("fomaml", 1))
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
            lambda: models.mlp(1, 1, (16,)), task="regression"
        )
        search = tuner.make_tuner(
            "bayesian",
            hypermodel,
            directory=directory,
            project_name="sine",
            max_trials=1,
            seed=0,
            hyperparameters=fixed(inner_steps=[1, 2]),
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


def import_fresh_tuner():
    """Imports keras_ga.tuner anew, leaving the loaded module in place."""
    with (
        mock.patch.dict(sys.modules),
        mock.patch.object(keras_ga, "tuner", tuner),
    ):
        del sys.modules["keras_ga.tuner"]
        return importlib.import_module("keras_ga.tuner")


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

    @parameterized.named_parameters(
        ("classification", "classification", 1.0),
        ("regression", "regression", 0.1),
    )
    def test_default_space_declared_with_hp(self, task, inner_max):
        hp = keras_tuner.HyperParameters()
        settings = tuner.default_space(hp, task)
        space = {p.name: p for p in hp.space}
        self.assertCountEqual(space, SEARCHED)
        self.assertEqual(settings, hp.values)
        self.assertIsInstance(space["algo"], hyperparameters.Choice)
        self.assertEqual(
            list(space["algo"].values), ["maml", "fomaml", "reptile"]
        )
        self.assertEqual(
            list(space["weighting"].values), ["agreement", "uniform"]
        )
        steps = space["inner_steps"]
        self.assertIsInstance(steps, hyperparameters.Int)
        self.assertEqual((steps.min_value, steps.max_value), (1, 5))
        for name, low, high in (
            ("inner_learning_rate", 1e-3, inner_max),
            ("outer_learning_rate", 1e-4, 1e-2),
        ):
            self.assertIsInstance(space[name], hyperparameters.Float)
            self.assertEqual(space[name].sampling, "log")
            self.assertEqual(
                (space[name].min_value, space[name].max_value), (low, high)
            )
        hypermodel = tuner.MetaHyperModel(flat_mlp, task=task)
        hp = keras_tuner.HyperParameters()
        self.assertEqual(hypermodel.space(hp), settings)

    def test_hyperparameters_fix_and_narrow_the_space(self):
        hypermodel = tuner.MetaHyperModel(flat_mlp)
        hp = fixed(
            inner_learning_rate=0.4,
            inner_steps=[1, 5],
            algo=["maml", "reptile"],
            weighting="agreement",
        )
        hypermodel.check_space(hp)
        settings = hypermodel.space(hp)
        space = {p.name: p for p in hp.space}
        self.assertCountEqual(space, SEARCHED)
        self.assertIsInstance(
            space["inner_learning_rate"], hyperparameters.Fixed
        )
        self.assertEqual(space["inner_learning_rate"].value, 0.4)
        self.assertEqual(settings["inner_learning_rate"], 0.4)
        self.assertEqual(list(space["inner_steps"].values), [1, 5])
        self.assertEqual(list(space["algo"].values), ["maml", "reptile"])
        self.assertEqual(space["weighting"].value, "agreement")
        self.assertEqual(settings["weighting"], "agreement")
        outer = space["outer_learning_rate"]
        self.assertEqual(outer.sampling, "log")
        self.assertEqual((outer.min_value, outer.max_value), (1e-4, 1e-2))

    def test_fixed_values_build_the_model(self):
        hypermodel = tuner.MetaHyperModel(flat_mlp)
        model = hypermodel.build(
            fixed(inner_steps=3, algo="reptile", outer_learning_rate=0.05)
        )
        self.assertEqual(model.inner_steps, 3)
        self.assertEqual(model.algo, "reptile")
        self.assertAlmostEqual(float(model.optimizer.learning_rate), 0.05)

    def test_tuner_searches_only_the_given_entries(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        hypermodel = tuner.MetaHyperModel(flat_mlp)
        search = tuner.make_tuner(
            "random",
            hypermodel,
            directory=directory,
            project_name="p",
            seed=0,
            hyperparameters=fixed(algo="reptile", inner_steps=[2, 3]),
            tune_new_entries=False,
        )
        space = search.oracle.get_space()
        self.assertCountEqual(
            [p.name for p in space.space], ["algo", "inner_steps"]
        )
        trial = search.oracle.create_trial("tuner0")
        self.assertEqual(trial.hyperparameters.values["algo"], "reptile")
        model = hypermodel.build(trial.hyperparameters)
        self.assertEqual(model.algo, "reptile")
        self.assertIn(model.inner_steps, [2, 3])
        # Not searched: the default space's defaults.
        self.assertEqual(model.weighting.name, "agreement")
        self.assertAlmostEqual(model.inner_learning_rate, 1e-3)

    def test_user_space_function(self):
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
        # The space is the user's alone: the rest keeps MetaModel's defaults.
        self.assertCountEqual(hp.values, ["algorithm", "eval_steps"])
        defaults = inspect.signature(keras_ga.MetaModel).parameters
        self.assertEqual(model.inner_steps, defaults["inner_steps"].default)
        self.assertEqual(
            model.inner_learning_rate, defaults["inner_learning_rate"].default
        )
        self.assertAlmostEqual(
            float(model.optimizer.learning_rate),
            float(keras.optimizers.Adam().learning_rate),
        )

    def test_user_space_extends_the_default_one(self):
        def space(hp):
            settings = tuner.default_space(hp)
            settings["eval_inner_steps"] = hp.Int("eval_inner_steps", 5, 10)
            return settings

        hypermodel = tuner.MetaHyperModel(flat_mlp, space=space)
        hp = fixed(eval_inner_steps=7, algo="fomaml")
        hypermodel.check_space(hp)
        model = hypermodel.build(hp)
        self.assertCountEqual(hp.values, SEARCHED + ("eval_inner_steps",))
        self.assertEqual((model.eval_inner_steps, model.algo), (7, "fomaml"))

    def test_subclass_overrides_the_space(self):
        class StepsOnly(tuner.MetaHyperModel):
            def space(self, hp):
                return {"inner_steps": hp.Choice("inner_steps", [2, 4])}

        hypermodel = StepsOnly(flat_mlp)
        hp = keras_tuner.HyperParameters()
        self.assertEqual(hypermodel.build(hp).inner_steps, 2)
        self.assertEqual(list(hp.values), ["inner_steps"])
        with self.assertRaisesRegex(
            ValueError, "`hyperparameters` must only hold entries"
        ):
            hypermodel.check_space(fixed(algo="maml"))

    def test_model_arguments_come_from_the_signature(self):
        self.assertIn("task_execution", tuner.MODEL_ARGUMENTS)
        parameters = inspect.signature(keras_ga.MetaModel).parameters
        self.assertEqual(
            tuner.MODEL_ARGUMENTS,
            tuple(p for p in parameters if p not in ("model", "kwargs")),
        )

        class Extended(keras_ga.MetaModel):
            def __init__(self, model, inner_momentum: float = 0.0, **kwargs):
                super().__init__(model, **kwargs)

        with mock.patch.object(keras_ga, "MetaModel", Extended):
            fresh = import_fresh_tuner()
        self.assertEqual(fresh.MODEL_ARGUMENTS, ("inner_momentum",))

    def test_every_model_argument_can_be_searched(self):
        def space(hp):
            return {
                "task_execution": hp.Choice("task_execution", ["map", "auto"])
            }

        hypermodel = tuner.MetaHyperModel(flat_mlp, space=space)
        model = hypermodel.build(fixed(task_execution="map"))
        self.assertEqual(model.task_execution, "map")

    def test_optimizer_function_and_weighting_object(self):
        def space(hp):
            return {
                "outer_learning_rate": 0.5,
                "weighting": keras_ga.UniformWeighting(name="plain"),
            }

        hypermodel = tuner.MetaHyperModel(
            flat_mlp,
            space=space,
            optimizer=lambda lr: keras.optimizers.SGD(lr),
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

    def test_missing_keras_tuner_names_the_extra(self):
        with mock.patch.dict(sys.modules, {"keras_tuner": None}):
            with self.assertRaisesRegex(
                ImportError,
                r"keras_ga.tuner needs the optional module `keras_tuner`.*"
                r'pip install "keras_ga\[tuner\]"',
            ):
                import_fresh_tuner()

    @parameterized.named_parameters(
        ("empty_algo", dict(algo=[]), "`values` must be provided for `Choice`"),
        ("empty_steps", dict(inner_steps=[]), "`values` must be provided"),
        ("empty_weighting", dict(weighting=[]), "`values` must be provided"),
        (
            "empty_lr",
            dict(outer_learning_rate=[]),
            "`values` must be provided",
        ),
        (
            "lr_min_above_max",
            dict(inner_learning_rate=("log", 1.0, 0.1)),
            r"Float\(name='inner_learning_rate'\), min_value 1.0 is greater than the max_value 0.1",
        ),
        (
            "steps_min_above_max",
            dict(inner_steps=(5, 1)),
            r"Int\(name='inner_steps'\), min_value 5 is greater than the max_value 1",
        ),
        (
            "zero_lr_log",
            dict(outer_learning_rate=("log", 0.0, 0.1)),
            "sampling='log' does not support negative values, found min_value: 0.0",
        ),
        (
            "zero_lr_linear",
            dict(outer_learning_rate=("linear", 0.0, 0.1)),
            r"`outer_learning_rate` must be a positive finite number. Received: outer_learning_rate=0.0 \(drawn by `space\(hp\)` with the defaults\)",
        ),
        (
            "negative_lr",
            dict(inner_learning_rate=-0.1),
            r"`inner_learning_rate` must be a positive finite number. Received: inner_learning_rate=-0.1",
        ),
        (
            "negative_lr_choice",
            dict(inner_learning_rate=[0.1, -0.1]),
            r"Received: inner_learning_rate=-0.1 \(drawn by `space\(hp\)` with inner_learning_rate=-0.1\)",
        ),
        (
            "zero_steps",
            dict(inner_steps=(0, 3)),
            "`inner_steps` must be a positive integer. Received: inner_steps=0",
        ),
        (
            "float_steps",
            dict(inner_steps=[1.0, 2.5]),
            "`inner_steps` must be a positive integer. Received: inner_steps=1.0",
        ),
        (
            "zero_eval_steps",
            dict(eval_inner_steps=(0, 2)),
            "`eval_inner_steps` must be a positive integer. Received: eval_inner_steps=0",
        ),
        (
            "unknown_algo",
            dict(algo=["maml", "sgd"]),
            r"`algo` must be one of \['maml', 'fomaml', 'reptile'\]. Received: algo='sgd'",
        ),
        ("unknown_fixed_algo", dict(algo="anil"), "`algo` must be one of"),
        ("algo_type", dict(algo=3), "`algo` must be one of"),
        (
            "lr_type",
            dict(inner_learning_rate="fast"),
            "`inner_learning_rate` must be a positive finite number",
        ),
        (
            "unknown_weighting",
            dict(weighting=["uniform", "median"]),
            r"`weighting` must be one of \['agreement', 'uniform'\]",
        ),
        (
            "unknown_task_execution",
            dict(task_execution=["map", "threads"]),
            r"`task_execution` must be one of \['auto', 'map', 'vectorized'\]. Received: task_execution='threads'",
        ),
        (
            "unknown_argument",
            dict(alpha=0.1),
            r"`space\(hp\)` returned `alpha`, which is not a `MetaModel` argument: the names allowed are MetaModel's arguments \['algo', .*'task_execution'.*\] and 'outer_learning_rate'. Received: alpha=0.1",
        ),
    )
    def test_bad_space_raises_before_any_build(self, settings, message):
        def space(hp):
            drawn = {}
            for name, value in settings.items():
                if isinstance(value, list):
                    drawn[name] = hp.Choice(name, value)
                elif isinstance(value, tuple) and isinstance(value[0], str):
                    drawn[name] = hp.Float(name, *value[1:], sampling=value[0])
                elif isinstance(value, tuple):
                    drawn[name] = hp.Int(name, *value)
                else:
                    drawn[name] = value
            return drawn

        builds = []
        with self.assertRaisesRegex(ValueError, message):
            tuner.MetaHyperModel(lambda: builds.append(1), space=space)
        self.assertEqual(builds, [])

    @parameterized.named_parameters(
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
            "optimizer",
            dict(optimizer="adamax2"),
            "Could not interpret optimizer identifier: adamax2",
        ),
        (
            "space_algo",
            dict(space=lambda hp: {"algo": hp.Choice("a", ["maml", "sgd"])}),
            r"`algo` must be one of .*Received: algo='sgd'. \(drawn by `space\(hp\)` with a='sgd'\)",
        ),
        (
            "space_lr",
            dict(space=lambda hp: {"inner_learning_rate": 0.0}),
            r"`inner_learning_rate` must be a positive finite number. Received: inner_learning_rate=0.0 \(drawn by `space\(hp\)` with the defaults\)",
        ),
        (
            "space_outer_lr",
            dict(space=lambda hp: {"outer_learning_rate": 0.0}),
            "`outer_learning_rate` must be a positive finite number",
        ),
    )
    def test_bad_configuration_raises_before_any_build(self, kwargs, message):
        builds = []
        with self.assertRaisesRegex(ValueError, message):
            tuner.MetaHyperModel(lambda: builds.append(1), **kwargs)
        self.assertEqual(builds, [])

    @parameterized.named_parameters(
        (
            "fixed_algo",
            dict(algo="anil"),
            r"`algo` must be one of \['maml', 'fomaml', 'reptile'\]. Received: algo='anil'",
        ),
        (
            "steps_choice",
            dict(inner_steps=[3, 0]),
            r"Received: inner_steps=0 \(drawn by `space\(hp\)` with inner_steps=0\)",
        ),
        (
            "unknown_entry",
            dict(inner_step=3),
            r"`hyperparameters` must only hold entries the search space declares \(\['algo', 'inner_learning_rate', 'inner_steps', 'outer_learning_rate', 'weighting'\]\); 'inner_step' is not one. Received: hyperparameters=\{'inner_step': 3\}",
        ),
    )
    def test_bad_hyperparameters_raise_before_any_build(self, entries, message):
        builds = []
        hypermodel = tuner.MetaHyperModel(lambda: builds.append(1))
        with self.assertRaisesRegex(ValueError, message):
            hypermodel.check_space(fixed(**entries))
        # A stock tuner checks them when it starts a search.
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        with self.assertRaisesRegex(ValueError, message):
            keras_tuner.RandomSearch(
                hypermodel,
                objective=hypermodel.objective,
                hyperparameters=fixed(**entries),
                directory=directory,
                project_name="p",
            )
        self.assertEqual(builds, [])

    @parameterized.named_parameters(
        (
            "build_base",
            dict(build_base=None),
            r"`build_base` must be a function returning a fresh, built keras.Model. Received: build_base=None",
        ),
        (
            "weighting_type",
            dict(space=lambda hp: {"weighting": 3}),
            r"`weighting` must be one of \['agreement', 'uniform'\] or a callable weighting object",
        ),
        (
            "mixed_choice",
            dict(space=lambda hp: {"inner_steps": hp.Choice("s", [1, 2.5])}),
            "A `Choice` can contain only one type of value",
        ),
        (
            "space_type",
            dict(space="maml"),
            r"`space` must be a function `space\(hp\) -> dict`. Received: space='maml'",
        ),
        (
            "space_result",
            dict(space=lambda hp: ["maml"]),
            r"`space\(hp\)` must return a dict of MetaModel arguments. Received: \['maml'\] of type list",
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
