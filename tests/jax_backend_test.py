"""`MetaModel` on Keras' JAX backend, from the TensorFlow test process.

Keras fixes its backend when it is imported, so the JAX side runs in
processes of its own:

- `test_both_backends_give_the_same_step`: `tests/backend_worker.py` runs
  one meta-step (two with carried inner Adam moments) and one evaluation
  of twenty models (MLP and conv + BatchNorm + max-pooling; MAML,
  first-order MAML, Reptile; uniform and agreement weighting; inner SGD,
  Adam and Adam with carried moments; learned inner rates; the
  multi-step loss; ANIL; per-step BatchNorm; weight diagnostics; two
  evaluation protocols)
  from the same weights and meta-batch in float64, under each backend; the weights after the step,
  the moving statistics, the carried moments and every logged value must
  agree to float64 precision.
- `test_jax_suite`: `tests/jax_checks.py` under `KERAS_BACKEND=jax`, in
  its own pytest process with TensorFlow made unimportable
  (`tests/without_tensorflow.py`): training, finite differences,
  refusals, saving, adaptation, evaluation, NumPy episodes.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest

from tests import backend_worker
from tests import support


def worker(backend: str, out: str) -> subprocess.Popen:
    return support.start_worker("backend_worker", out, KERAS_BACKEND=backend)


class JAXBackendTest(absltest.TestCase):
    def test_both_backends_give_the_same_step(self):
        outs = {b: tempfile.mkdtemp() for b in ("tensorflow", "jax")}
        procs = {b: worker(b, outs[b]) for b in outs}
        for proc in procs.values():
            support.finish_worker(self, proc, timeout=600)
        for case in backend_worker.CASES:
            tf_run = np.load(os.path.join(outs["tensorflow"], f"{case}.npz"))
            jax_run = np.load(os.path.join(outs["jax"], f"{case}.npz"))
            self.assertEqual(sorted(tf_run.files), sorted(jax_run.files), case)
            self.assertIn("w0", tf_run.files)
            for key in tf_run.files:
                np.testing.assert_allclose(
                    jax_run[key],
                    tf_run[key],
                    rtol=1e-11,
                    atol=1e-13,
                    err_msg=f"{case}: {key}",
                )

    def test_jax_suite(self):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "tests.without_tensorflow",
                "tests/jax_checks.py",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=support.REPO,
            env=support.python_env(KERAS_BACKEND="jax"),
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, output[-4000:])
        self.assertIn(" passed", output)
        self.assertNotIn("skipped", output)


if __name__ == "__main__":
    absltest.main()
