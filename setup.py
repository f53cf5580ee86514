"""Installs keras_ga: gradient-based meta-learning for Keras 3."""

import setuptools

# The documentation site (mkdocs.yml): MkDocs, the Material theme and the API
# reference generated from the docstrings.
_DOCS = [
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.5,<10",
    "mkdocstrings[python]>=0.26",
]

setuptools.setup(
    name="keras_ga",
    version="0.1.0",
    description=(
        "MAML, first-order MAML and Reptile for Keras 3 / TensorFlow, "
        "with gradient-agreement task weighting."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["keras_ga", "keras_ga.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets",
        "keras-tuner>=1.4",
        # keras-tuner imports tensorboard in every trial and scikit-learn in
        # BayesianOptimization without declaring them.
        "tensorboard",
        "scikit-learn",
        "absl-py",
        "numpy",
        "pillow",
    ],
    extras_require={
        # The test extra includes the docs packages: tests/docs_test.py
        # builds the site (and opens it in Debian's chromium).
        "test": ["pytest", "pytest-xdist", "ruff", "matplotlib", *_DOCS],
        "examples": ["matplotlib"],
        "docs": _DOCS,
    },
    license="Apache-2.0",
)
