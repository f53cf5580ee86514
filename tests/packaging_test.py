"""Tests of the packaging: one version, core dependencies, optional extras.

`import keras_ga` needs only the core dependencies of `pyproject.toml`;
every optional module is imported inside `keras_ga._optional.requires_extra`,
which names the extra that installs it.
"""

import ast
import importlib
import importlib.metadata
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
from packaging.requirements import Requirement

import keras_ga
from keras_ga import _optional
from keras_ga import _version
from keras_ga import plotting
from keras_ga.datasets import omniglot
from tests import support

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `test` extra installs tomli.
    import tomli as tomllib

# Modules of the extras; keras and TensorFlow import some of them when they
# are installed, so the check below compares with what those two import.
OPTIONAL_MODULES = (
    "keras_tuner",
    "tensorflow_datasets",
    "matplotlib",
    "sklearn",
    "tensorboard",
)

# A fresh interpreter with every optional module made unimportable.
FRESH_IMPORT = f"""
import sys
for name in {OPTIONAL_MODULES!r}:
    sys.modules[name] = None
import keras
import tensorflow
before = set(sys.modules)
import keras_ga
import keras_ga.plotting
added = {{m.split(".")[0] for m in set(sys.modules) - before}}
print(sorted(added))
"""


def pyproject():
    with open(support.REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def requirement_name(requirement):
    """`"keras-tuner>=1.4"` -> `"keras-tuner"`."""
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i]
    return requirement


def optional_imports():
    """`(module, extra)` of each import in `_optional.requires_extra`."""
    found = set()
    for path in sorted((support.REPO / "keras_ga").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.With):
                continue
            call = node.items[0].context_expr
            if not (
                isinstance(call, ast.Call)
                and ast.unparse(call.func) == "_optional.requires_extra"
            ):
                continue
            extra = call.args[0].value
            for inner in node.body:
                if isinstance(inner, ast.Import):
                    found |= {(a.name, extra) for a in inner.names}
    return found


def requirement_closure(requirements):
    """The distribution names `requirements` install, by installed metadata.

    Requirements with an `extra ==` marker are not followed (nothing asks
    for those extras); other markers are taken as true.
    """
    seen, todo = set(), [requirement_name(r) for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            declared = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in declared:
            requirement = Requirement(text)
            if "extra" not in str(requirement.marker or ""):
                todo.append(requirement.name)
    return seen


class PyprojectTest(absltest.TestCase):
    def test_version_has_one_static_source(self):
        project = pyproject()
        self.assertIn("version", project["project"]["dynamic"])
        attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
        self.assertEqual(attr, "keras_ga._version.__version__")
        # setuptools reads a literal assignment without importing keras_ga
        # (and so TensorFlow).
        tree = ast.parse(
            (support.REPO / "keras_ga" / "_version.py").read_text()
        )
        literals = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [t.id for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
        ]
        self.assertEqual(literals, [keras_ga.__version__])
        self.assertEqual(_version.__version__, keras_ga.__version__)

    def test_core_dependencies_are_what_import_keras_ga_needs(self):
        names = {
            requirement_name(r) for r in pyproject()["project"]["dependencies"]
        }
        self.assertEqual(names, {"keras", "numpy", "pillow"})

    def test_each_backend_is_an_extra_and_jax_installs_no_tensorflow(self):
        extras = pyproject()["project"]["optional-dependencies"]
        self.assertEqual(extras["tensorflow"], ["tensorflow>=2.16"])
        # The extras that run on TensorFlow bring it.
        for name in ("tuner", "datasets", "examples"):
            self.assertTrue(
                any(
                    r.startswith("keras_ga[") and "tensorflow" in r
                    for r in extras[name]
                ),
                (name, extras[name]),
            )
        # `pip install keras_ga[jax]`: the core, JAX and what they need,
        # as the installed packages declare it, without TensorFlow.
        closure = requirement_closure(
            pyproject()["project"]["dependencies"] + extras["jax"]
        )
        self.assertIn("jax", closure)
        self.assertIn("keras", closure)
        self.assertFalse(
            {n for n in closure if "tensorflow" in n or n == "tensorboard"},
            sorted(closure),
        )
        # The lazily imported TensorFlow names that extra.
        self.assertEqual(_optional.tensorflow._lazy[1], "tensorflow")

    def test_every_optional_import_names_a_declared_extra(self):
        extras = pyproject()["project"]["optional-dependencies"]
        imports = optional_imports()
        self.assertEqual(
            imports,
            {
                ("keras_tuner", "tuner"),
                ("matplotlib", "plotting"),
                ("matplotlib.pyplot", "plotting"),
                ("tensorflow_datasets", "datasets"),
                ("jax", "jax"),
                ("jax.numpy", "jax"),
            },
        )
        for _, extra in imports:
            self.assertIn(extra, extras)
        self.assertIn("keras-tuner>=1.4", extras["tuner"])
        self.assertIn("matplotlib", extras["plotting"])
        self.assertIn("tensorflow-datasets", extras["datasets"])

    def test_extras(self):
        extras = pyproject()["project"]["optional-dependencies"]
        self.assertContainsSubset(
            {
                "tensorflow",
                "tuner",
                "datasets",
                "plotting",
                "examples",
                "docs",
                "jax",
                "test",
                "all",
            },
            set(extras),
        )
        self.assertEqual(
            extras["all"],
            [
                "keras_ga[tensorflow,jax,tuner,datasets,plotting,examples,"
                "docs,test]"
            ],
        )
        # The test suite runs both backends' tests.
        self.assertIn("keras_ga[tensorflow,jax,examples,docs]", extras["test"])
        # The README's test command needs pytest-xdist (`-n 2`).
        self.assertContainsSubset(
            {"pytest", "pytest-xdist", "ruff"}, set(extras["test"])
        )


class RequiresExtraTest(absltest.TestCase):
    def test_passes_successful_imports_through(self):
        with _optional.requires_extra("x", feature="y"):
            import json
        self.assertIs(json, sys.modules["json"])

    def test_missing_module_names_the_extra(self):
        with mock.patch.dict(sys.modules, {"keras_tuner": None}):
            with self.assertRaisesRegex(
                ImportError,
                r"^keras_ga\.tuner needs the optional module `keras_tuner`, "
                r"which could not be imported \(.*\)\. Install keras_ga's "
                r'`tuner` extra: pip install "keras_ga\[tuner\]"$',
            ) as raised:
                with _optional.requires_extra(
                    "tuner", feature="keras_ga.tuner"
                ):
                    import keras_tuner  # noqa: F401
        self.assertIsInstance(raised.exception.__cause__, ImportError)

    def test_import_error_without_a_module_name(self):
        with self.assertRaisesRegex(
            ImportError,
            r"^Plotting needs an optional module, which could not be "
            r"imported \(broken\)\. Install keras_ga's "
            r'`plotting` extra: pip install "keras_ga\[plotting\]"$',
        ):
            with _optional.requires_extra("plotting", feature="Plotting"):
                raise ImportError("broken")

    def test_other_errors_pass_unchanged(self):
        with self.assertRaisesRegex(ValueError, "^not an import$"):
            with _optional.requires_extra("tuner", feature="keras_ga.tuner"):
                raise ValueError("not an import")


class OptionalFeaturesTest(parameterized.TestCase):
    def test_tuner_without_keras_tuner(self):
        with mock.patch.dict(sys.modules):
            sys.modules.pop("keras_ga.tuner", None)
            sys.modules["keras_tuner"] = None
            with self.assertRaisesRegex(
                ImportError,
                r"keras_ga\.tuner needs the optional module `keras_tuner`.*"
                r'pip install "keras_ga\[tuner\]"',
            ):
                importlib.import_module("keras_ga.tuner")

    def test_plotting_without_matplotlib(self):
        with mock.patch.dict(
            sys.modules, {"matplotlib": None, "matplotlib.pyplot": None}
        ):
            with self.assertRaisesRegex(
                ImportError,
                r"keras_ga\.plotting needs the optional module `matplotlib`.*"
                r'pip install "keras_ga\[plotting\]"',
            ):
                plotting.plot_learning_curves(
                    {"run": "/nonexistent"}, "out.png", metrics=["loss"]
                )

    def test_omniglot_download_without_tensorflow_datasets(self):
        with tempfile.TemporaryDirectory() as root:
            with mock.patch.dict(sys.modules, {"tensorflow_datasets": None}):
                with self.assertRaisesRegex(
                    FileNotFoundError,
                    r"Omniglot not found\..*tensorflow_datasets failed: ImportError: "
                    r"Downloading Omniglot needs the optional module "
                    r"`tensorflow_datasets`.*"
                    r'pip install "keras_ga\[datasets\]"',
                ):
                    omniglot.load_omniglot(data_dir=root, cache_dir=root)


class FreshImportTest(absltest.TestCase):
    def test_import_keras_ga_needs_and_imports_no_optional_module(self):
        done = subprocess.run(
            [sys.executable, "-c", FRESH_IMPORT],
            capture_output=True,
            text=True,
            cwd=support.REPO,
            env=support.python_env(),
            timeout=300,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        # Nothing but keras_ga itself: no absl, no optional package.
        self.assertEqual(done.stdout.split("\n")[-2], "['keras_ga']")


if __name__ == "__main__":
    absltest.main()
