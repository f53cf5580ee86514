"""What the tests share: the repository, the real data, worker processes,
the linear-regression tasks with hand-derived gradients, the tiny Omniglot
run of the example tests.

Tests import it as `from tests import support`: pytest puts the repository
root on `sys.path` (`pythonpath` in `pyproject.toml`), and so does Bazel
(`imports = ["."]` of `//:test_support` in `BUILD`).
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "KERAS_GA_DATA"


def data_dir() -> Path:
    """The real data: `$KERAS_GA_DATA`, else `<repo>/../shared/data`.

    It holds `omniglot/images_background.zip`, `omniglot/
    images_evaluation.zip` and `miniimagenet/{train,val,test}.csv`.
    """
    return Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")


def python_env(**variables: str) -> dict[str, str]:
    """The environment for a Python subprocess of a test.

    It imports `keras_ga` and `tests` from this checkout (the repository
    root first on `PYTHONPATH`), keeps TensorFlow's C++ logs quiet, and
    adds `variables`.
    """
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(variables)
    return env


def start_worker(module: str, *args, **variables: str) -> subprocess.Popen:
    """Starts `python -m tests.<module> ARGS` with `python_env(**variables)`.

    Its stdout and stderr are captured together, for `finish_worker`.
    """
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.{module}", *map(str, args)],
        cwd=REPO,
        env=python_env(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish_worker(test, proc: subprocess.Popen, timeout: float) -> None:
    """Waits for `proc`; `test` fails with the end of its output unless 0."""
    output, _ = proc.communicate(timeout=timeout)
    test.assertEqual(proc.returncode, 0, output.decode()[-3000:])


def make_tempdir(test_or_class) -> str:
    """A temporary folder, removed when the test class is done.

    (absltest's `create_tempdir` needs parsed flags, which pytest skips.)
    """
    path = tempfile.mkdtemp()
    test_or_class.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_omniglot(**changes):
    """The Omniglot example's FOMAML 5-way 1-shot preset, shrunk for tests.

    3-way, 2 tasks a meta-batch, a conv4 of 4 filters, 4 test tasks in
    meta-batches of 2, on the real data; `changes` sets the rest (the
    steps, the validation, ...).
    """
    # Here, not at the top: the configs import TensorFlow.
    from examples.configs import omniglot

    return dataclasses.replace(
        omniglot.PRESETS["fomaml_5way_1shot"],
        ways=3,
        meta_batch_size=2,
        eval_tasks=4,
        eval_batch_size=2,
        filters=4,
        data_dir=str(data_dir()),
        **changes,
    )


def linear_base(dim: int):
    """A float64 linear model `[dim] -> [1]` without bias: theta is `[dim, 1]`."""
    import keras  # Here, not at the top: workers import this module first.

    return keras.Sequential(
        [
            keras.Input((dim,), dtype="float64"),
            keras.layers.Dense(1, use_bias=False, dtype="float64"),
        ]
    )


def tanh_base(dim: int):
    """A seeded float64 MLP `[dim] -> 6 tanh -> [1]`, for second-order checks."""
    import keras  # Here, not at the top: workers import this module first.

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((dim,), dtype="float64"),
            keras.layers.Dense(6, activation="tanh", dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )


def linear_episode(n, s=6, q=5, seed=0, *, dim: int) -> dict:
    """N linear-regression tasks `y = x @ w_i` in `dim` inputs, float64.

    The support targets carry noise of standard deviation 0.1, so that the
    adapted weights are not the task's `w_i` exactly; the query targets
    carry none.
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, dim, 1))
    sx, qx = rng.normal(size=(n, s, dim)), rng.normal(size=(n, q, dim))
    return {
        "support_x": sx,
        "support_y": sx @ w + 0.1 * rng.normal(size=(n, s, 1)),
        "query_x": qx,
        "query_y": qx @ w,
    }


def mse_grad(theta, x, y):
    """The gradient of `mean((x @ theta - y)^2)` in theta, by hand."""
    return 2.0 / len(x) * x.T @ (x @ theta - y)


def task(ep: dict, i: int) -> list:
    """Task `i` of a meta-batch: `[support_x, support_y, query_x, query_y]`."""
    import tensorflow as tf

    return [tf.constant(ep[k][i]) for k in EPISODE_ORDER]


# The order of `keras_ga.EPISODE_KEYS`, without importing keras_ga here.
EPISODE_ORDER = ("support_x", "support_y", "query_x", "query_y")


def stateless_mse(base, params, x, y):
    """The mean squared error of `base` (no state) with weights `params`."""
    import tensorflow as tf

    out, _ = base.stateless_call(params, [], x)
    return tf.reduce_mean(tf.square(out - y))


def values(variables) -> list:
    """The variables' values as NumPy arrays."""
    return [v.numpy() for v in variables]


def assert_matches_finite_differences(
    test, loss_at, theta, grads, directions=3, h=1e-6, rtol=1e-6
):
    """`grads` against central differences of `loss_at` along directions.

    Along `directions` random directions d (seeded), the derivative
    `(loss_at(theta + h d) - loss_at(theta - h d)) / 2h` must equal
    `sum <grads, d>` to relative error `rtol` (float64 models).
    """
    rng = np.random.default_rng(1)
    for _ in range(directions):
        d = [rng.normal(size=t.shape) for t in theta]
        fd = (
            loss_at([t + h * u for t, u in zip(theta, d)])
            - loss_at([t - h * u for t, u in zip(theta, d)])
        ) / (2 * h)
        analytic = sum(np.sum(g * u) for g, u in zip(grads, d))
        test.assertLess(abs(analytic - fd) / abs(fd), rtol)
