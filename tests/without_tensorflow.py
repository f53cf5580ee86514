"""A pytest plugin that makes TensorFlow look uninstalled (`-p`).

`tests/jax_backend_test.py` runs `tests/jax_checks.py` under
`KERAS_BACKEND=jax` with this plugin, so the JAX suite also checks that
keras_ga's JAX path works without TensorFlow: any import of `tensorflow`
(or of TensorBoard, which needs it) fails as it does when the package is
not installed.
"""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorboard", "tf_keras")


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if any(name.split(".")[0] in BLOCKED for name in sys.modules):
    raise RuntimeError(
        "tests.without_tensorflow: TensorFlow was imported before the "
        "plugin; load it first (`python -m pytest -p tests.without_tensorflow`)."
    )
sys.meta_path.insert(0, _NotInstalled())
