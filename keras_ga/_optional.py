"""Imports of optional dependencies, each failing with the extra to install.

`import keras_ga` needs only TensorFlow, Keras, NumPy and Pillow. The other
packages belong to extras declared in `pyproject.toml`, and the modules
that use them import them inside `requires_extra`:

```python
with _optional.requires_extra("tuner", feature="keras_ga.tuner"):
    import keras_tuner
```

The import statements stay plain, for readers and tools, and a missing
package fails with the command that installs it.
"""

import contextlib


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
