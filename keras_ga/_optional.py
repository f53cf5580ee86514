"""Imports of optional dependencies, each failing with the extra to install.

`import keras_ga` needs only Keras, NumPy and Pillow, on either backend. The
other packages belong to extras declared in `pyproject.toml`, and the modules
that use them import them inside `requires_extra`:

```python
with _optional.requires_extra("tuner", feature="keras_ga.tuner"):
    import keras_tuner
```

The import statements stay plain, for readers and tools, and a missing
package fails with the command that installs it.

TensorFlow is the one exception: the library's TensorFlow code lives in the
same modules as the backend-neutral code that the JAX backend runs, so those
modules import `tensorflow` (the `LazyModule` below), which loads
TensorFlow on first use. Under `KERAS_BACKEND=jax` nothing uses it and
keras_ga runs with TensorFlow not installed.
"""

import contextlib
import importlib
import sys


@contextlib.contextmanager
def requires_extra(extra: str, *, feature: str):
    """Turns an `ImportError` in the block into one naming keras_ga's extra.

    Args:
        extra: the extra of `pyproject.toml` that installs the modules
            imported in the block, for example `"tuner"`.
        feature: what needs them, for the message (`"keras_ga.tuner"`).

    Yields:
        Nothing; the block runs as is when its imports succeed.

    Raises:
        ImportError: when an import in the block fails; the message names
            `feature`, the missing module and the command
            `pip install "keras_ga[<extra>]"`, and the original error is
            chained.
    """
    try:
        yield
    except ImportError as error:
        module = "an optional module"
        if error.name:
            module = f"the optional module `{error.name}`"
        raise ImportError(
            f"{feature} needs {module}, which could not be imported "
            f"({error}). Install keras_ga's `{extra}` extra: "
            f'pip install "keras_ga[{extra}]"'
        ) from error


class LazyModule:
    """A module imported on first attribute access, as `requires_extra` would.

    `tf = LazyModule("tensorflow", extra="tensorflow", feature=...)` costs
    nothing at import time; `tf.constant(1)` imports TensorFlow then (or
    fails naming the extra), and each attribute read is cached on the
    object, so later reads are plain attribute reads.
    """

    def __init__(self, name: str, *, extra: str, feature: str):
        self._lazy = (name, extra, feature)

    def __getattr__(self, attribute: str):
        # Only called for attributes not yet cached in `__dict__`.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        name, extra, feature = self._lazy
        with requires_extra(extra, feature=feature):
            module = importlib.import_module(name)
        value = getattr(module, attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<LazyModule {self._lazy[0]!r}>"


# TensorFlow, for the TensorFlow backend and the tf.data pipelines.
tensorflow = LazyModule(
    "tensorflow",
    extra="tensorflow",
    feature="keras_ga on the TensorFlow backend (and its tf.data pipelines)",
)


def is_tf_dataset(value) -> bool:
    """Whether `value` is a `tf.data.Dataset`, never importing TensorFlow.

    A dataset exists only once TensorFlow is imported, so with TensorFlow
    not imported (the JAX backend) the answer is no.
    """
    return "tensorflow" in sys.modules and isinstance(
        value, tensorflow.data.Dataset
    )
