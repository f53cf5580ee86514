"""The docstrings: every public function and class has an example, and the
examples written as `>>>` sessions run and print what they show.

Examples may take `import keras`, `import keras_ga`, `import numpy as np`
and `import tensorflow as tf` for granted. Those that need data on disk
(the dataset loaders) are ```python blocks, which this test does not run.
"""

import doctest
import importlib
import inspect
import pkgutil
import re
import types
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import keras_ga
from keras_ga import algorithms

# Submodules with public members that `keras_ga.__all__` does not list
# (the optional ones are not imported by `import keras_ga`).
OTHER_MODULES = ("tuner", "plotting", "pooling", "threads")
SECTION = re.compile(r"^\s*Examples?:\s*$", re.M)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(keras_ga.__path__, "keras_ga.")
    if not info.name.rsplit(".", 1)[-1].startswith("_")
)


def public_modules():
    names = [
        n
        for n in keras_ga.__all__
        if isinstance(getattr(keras_ga, n), types.ModuleType)
    ]
    return [
        importlib.import_module(f"keras_ga.{n}")
        for n in names + list(OTHER_MODULES)
    ]


def module_members(module):
    """A module's `__all__`, else the public names it defines."""
    if hasattr(module, "__all__"):
        return [getattr(module, name) for name in module.__all__]
    return [
        value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    ]


def public_objects():
    """Every public function and class: `keras_ga.*` and submodules'."""
    members = [getattr(keras_ga, name) for name in keras_ga.__all__]
    for module in public_modules():
        members += module_members(module)
    found = {}
    for obj in members:
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


class DocstringTest(parameterized.TestCase):
    def test_every_public_function_and_class_has_an_example(self):
        objects = public_objects()
        self.assertGreater(len(objects), 40)  # the walk found them
        missing = [
            name
            for name, obj in objects.items()
            if not SECTION.search(inspect.getdoc(obj) or "")
        ]
        self.assertEmpty(missing, "Docstrings without an Example section.")

    @parameterized.named_parameters((name, name) for name in MODULES)
    def test_examples_run(self, name):
        module = importlib.import_module(name)
        globs = {"keras": keras, "keras_ga": keras_ga, "np": np, "tf": tf}
        tests = doctest.DocTestFinder().find(module, name, extraglobs=globs)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        report = []  # What each failing example printed, and expected.
        # An example that registers an algorithm leaves the registry as it
        # found it.
        with mock.patch.dict(algorithms._REGISTRY):
            for test in tests:
                runner.run(test, out=report.append)
        self.assertEqual(runner.failures, 0, "".join(report))


if __name__ == "__main__":
    absltest.main()
