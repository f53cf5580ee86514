"""The documentation: the site builds, renders in Chromium, its code runs.

The site is built once with `mkdocs build --strict`, the command CI runs
(warnings are errors), and opened in a real headless Chromium: Debian's
package (`apt-get install chromium`), not a browser build downloaded by a
Python package. The tutorial and the README's quick start are executed as
written, on a smaller training budget.
"""

import ast
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Public submodules that are not imported by `import keras_ga`.
OPTIONAL_MODULES = ("tuner", "plotting")
BROWSERS = ("chromium", "chromium-browser")


def make_tempdir(test_case):
    # absltest's create_tempdir needs parsed flags, which pytest skips.
    path = tempfile.mkdtemp()
    test_case.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def build_site(site_dir):
    """Runs `mkdocs build --strict`; returns (exit code, its output)."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    process = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"]
        + ["--site-dir", site_dir],
        cwd=REPO,  # README.md snippets are read relative to the cwd.
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return process.returncode, process.stdout + process.stderr


def chromium():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        "The docs test opens the site in Chromium; install Debian's "
        f"package: `apt-get install chromium`. None of {BROWSERS} is on "
        "PATH."
    )


def dump_dom(url, profile_dir):
    """The DOM of `url` after Chromium has loaded it and run its scripts."""
    process = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root.
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile_dir}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if process.returncode != 0:
        raise AssertionError(
            f"Chromium failed on {url}: {process.stderr[-2000:]}"
        )
    return process.stdout


class _Signatures(html.parser.HTMLParser):
    """Collects the text of every `doc-signature` element, and all text."""

    def __init__(self):
        super().__init__()
        self.signatures = []
        self.text = []
        self._depth = 0  # Open elements inside the current signature.

    def handle_starttag(self, tag, attrs):
        if self._depth:
            self._depth += 1
        elif "doc-signature" in (dict(attrs).get("class") or "").split():
            self._depth = 1
            self.signatures.append("")

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._depth:
            self.signatures[-1] += data


def public_names():
    """`keras_ga.__all__`, read from the source without importing it."""
    with open(os.path.join(REPO, "keras_ga", "__init__.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("keras_ga/__init__.py defines no __all__.")


def python_blocks(markdown):
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def readme_section(name):
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    start = readme.index(f"--8<-- [start:{name}]")
    return readme[start : readme.index(f"--8<-- [end:{name}]")]


def shrink(code, replacements):
    """Applies each (old, new) to `code`; each `old` must occur once."""
    for old, new in replacements:
        if code.count(old) != 1:
            raise AssertionError(
                f"Expected {old!r} once in the documented code, found it "
                f"{code.count(old)} times: update this test with the docs."
            )
        code = code.replace(old, new)
    return code


class SiteTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.site = tempfile.mkdtemp()
        cls.build_code, cls.build_output = build_site(cls.site)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.site, ignore_errors=True)
        super().tearDownClass()

    def assert_built(self):
        self.assertEqual(
            self.build_code, 0, f"mkdocs build --strict:\n{self.build_output}"
        )

    def test_builds_with_warnings_as_errors(self):
        self.assert_built()
        self.assertNotIn("WARNING", self.build_output)
        for page in ("index", "guide/index", "tutorial/index"):
            self.assertTrue(
                os.path.exists(os.path.join(self.site, page + ".html")),
                page,
            )

    def test_meta_model_page_renders_its_signature_in_chromium(self):
        self.assert_built()
        page = os.path.join(self.site, "api", "meta_model", "index.html")
        dom = dump_dom("file://" + page, make_tempdir(self))
        parser = _Signatures()
        parser.feed(dom)
        signature = "".join(parser.signatures[:1])
        self.assertTrue(signature.startswith("MetaModel("), signature)
        for argument in ("model", "algo", "weighting", "inner_learning_rate"):
            self.assertIn(argument, signature)
        text = " ".join(parser.text)
        self.assertIn("Meta-trains a Keras model", text)  # the docstring
        self.assertIn("inner_learning_rate", text)

    def test_every_public_name_has_a_reference_entry(self):
        self.assert_built()
        anchors = set()
        for root, _, files in os.walk(os.path.join(self.site, "api")):
            for name in files:
                if name.endswith(".html"):
                    with open(os.path.join(root, name)) as f:
                        anchors |= set(re.findall(r'id="([^"]+)"', f.read()))
        for name in public_names() + list(OPTIONAL_MODULES):
            self.assertIn(f"keras_ga.{name}", anchors)


class DocumentedCodeTest(absltest.TestCase):
    """Runs the documented code as a reader would, on a small budget."""

    def run_blocks(self, blocks):
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(make_tempdir(self))  # Where the code writes its files.
        namespace = {"__name__": "__docs__"}
        for block in blocks:
            exec(compile(block, "<documented code>", "exec"), namespace)
        return namespace

    def test_tutorial_runs(self):
        with open(os.path.join(REPO, "docs", "tutorial.md")) as f:
            code = "\n".join(python_blocks(f.read()))
        code = shrink(
            code,
            [
                ("EPOCHS = 5\n", "EPOCHS = 1\n"),
                ("STEPS_PER_EPOCH = 50\n", "STEPS_PER_EPOCH = 2\n"),
                ("num_tasks=100)", "num_tasks=20)"),
            ],
        )
        ns = self.run_blocks([code])
        # The shapes the tutorial prints in a comment.
        self.assertEqual(
            tuple(ns["batch"]["support_x"].shape), (8, 5, 16, 16, 1)
        )
        self.assertEqual(tuple(ns["batch"]["query_y"].shape), (8, 25))
        self.assertIn("pre_accuracy", ns["history"].history)
        self.assertEqual(ns["result"].num_tasks, 20)
        self.assertEqual(ns["result"].metric, "accuracy")
        for predicted in (ns["alone"], ns["together"]):
            self.assertEqual(predicted.shape, (5 * 19,))
        # Stock BatchNorm is converted in place: the user's model is trained.
        self.assertIs(ns["model"].base, ns["base"])
        restored = ns["restored"]
        self.assertEqual(type(restored).__name__, "MetaModel")
        for saved, loaded in zip(
            ns["model"].base.get_weights(), restored.base.get_weights()
        ):
            self.assertEqual(saved.tolist(), loaded.tolist())
        self.assertEqual(ns["regressor"].algo, "reptile")

    def test_readme_quick_start_runs(self):
        (code,) = python_blocks(readme_section("quickstart"))
        code = shrink(
            code,
            [
                # TensorFlow may already run in this test process.
                ("keras_ga.set_cpu_threads()", "pass"),
                (
                    "epochs=5, steps_per_epoch=200",
                    "epochs=1, steps_per_epoch=2",
                ),
                ("num_tasks=100)", "num_tasks=20)"),
            ],
        )
        ns = self.run_blocks([code])
        self.assertEqual(ns["prediction"].shape, (100, 1))
        self.assertTrue(np.all(np.isfinite(ns["prediction"])))


if __name__ == "__main__":
    absltest.main()
