"""The machine's name that run records and benchmark reports carry."""

import os
import subprocess
import sys

from absl.testing import absltest

from examples import _machine
from tests import support


class MachineTest(absltest.TestCase):
    def test_cpu_names_a_model_and_the_logical_cores(self):
        model, cores = _machine.cpu().rsplit(", ", 1)
        self.assertNotEmpty(model.strip())
        self.assertEqual(cores, f"{os.cpu_count()} logical cores")

    def test_imports_no_tensorflow(self):
        # benchmarks/_report.py uses it in workers that have only PyTorch.
        code = (
            "import sys; from examples import _machine; _machine.cpu(); "
            "print(sorted({'tensorflow', 'keras', 'keras_ga'} & "
            "set(sys.modules)))"
        )
        output = subprocess.run(
            [sys.executable, "-c", code],
            cwd=support.REPO,
            env=support.python_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertEqual(output.strip(), "[]")


if __name__ == "__main__":
    absltest.main()
