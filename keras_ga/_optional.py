"""Imports of optional dependencies, each failing with the extra to install.

`import keras_ga` needs only TensorFlow, Keras, NumPy and Pillow. The other
packages belong to extras declared in `pyproject.toml` and are imported
where a feature first needs them, through `require`.
"""

import importlib
import types


def require(module: str, *, extra: str, feature: str) -> types.ModuleType:
    """Imports `module`, or explains which keras_ga extra provides it.

    Args:
        module: the module to import, for example `"keras_tuner"`.
        extra: the extra of `pyproject.toml` that installs it.
        feature: what needs it, for the message (`"keras_ga.tuner"`).

    Returns:
        The imported module.

    Raises:
        ImportError: when `module` cannot be imported; the message names
            `feature`, `module` and the command
            `pip install "keras_ga[<extra>]"`, and the original error is
            chained.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{feature} needs the optional module `{module}`, which could "
            f"not be imported ({error}). Install keras_ga's `{extra}` extra: "
            f'pip install "keras_ga[{extra}]"'
        ) from error
