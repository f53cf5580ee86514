"""A shim for tools that still call setup.py; the metadata is pyproject.toml."""

import setuptools

setuptools.setup()
