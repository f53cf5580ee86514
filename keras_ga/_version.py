"""The version of keras_ga: its single source.

`pyproject.toml` reads it (`[tool.setuptools.dynamic]`) without importing the
package, and `keras_ga.__version__` re-exports it.
"""

__version__ = "0.1.0"
