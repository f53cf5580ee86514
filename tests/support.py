"""What the tests share: the repository, the real data, worker processes.

Tests import it as `from tests import support`: pytest puts the repository
root on `sys.path` (`pythonpath` in `pyproject.toml`), and so does Bazel
(`imports = ["."]` of `//:test_support` in `BUILD`).
"""

import os
import subprocess
import sys
from pathlib import Path

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
