"""Markdown tables and output files of the benchmark scripts."""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import time

import numpy as np
from scipy import stats

from examples import _machine


def fmt(value, spec=".2f", missing="n/a") -> str:
    """`value` formatted with `spec`, or `missing` when it is None."""
    return missing if value is None else format(value, spec)


def table(header, rows) -> str:
    """A Markdown table of `header` (cells) and `rows` (lists of cells)."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """The CPU model, its logical cores and the Python version."""
    return f"{_machine.cpu()}, Python {platform.python_version()}"


def finish(name, sections, results, output_dir, started) -> None:
    """Prints the report and, with `output_dir`, writes it and the results.

    Args:
        name: the file stem: `<output_dir>/<name>.md` and `<name>.json`.
        sections: `(title, Markdown)` pairs.
        results: the raw results, written as JSON.
        output_dir: a folder, created if needed; None writes nothing.
        started: `time.time()` at the start of the run.
    """
    date = time.strftime("%Y-%m-%d", time.gmtime(started))
    parts = [f"Machine: {machine()}. Date: {date}."]
    parts += [f"### {title}\n\n{body}" for title, body in sections]
    parts.append(f"Took {time.time() - started:.0f} s.")
    text = "\n\n".join(parts)
    print(text)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, name + ".md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(output_dir, name + ".json"), "w") as f:
            json.dump(results, f, indent=1)


def load_runs(out_dir) -> list:
    """The `results.json` summaries of the finished runs in `out_dir`.

    Each summary also gets `run_dir` (its folder) and `by_protocol`
    (protocol name, as `keras_ga.protocols` names them, to that protocol's
    result; a result without a name is `"transductive"` or
    `"non-transductive"` by its flag).
    """
    summaries = []
    for path in sorted(pathlib.Path(out_dir).glob("*/results.json")):
        summary = json.loads(path.read_text())
        summary["run_dir"] = str(path.parent)
        summary["by_protocol"] = {
            r.get("protocol")
            or ("transductive" if r["transductive"] else "non-transductive"): r
            for r in summary["results"]
        }
        summaries.append(summary)
    return summaries


def accuracy_cell(result) -> str:
    """`mean +- ci95` of a result dict, in percent; `-` for None."""
    if result is None:
        return "-"
    return f"{100 * result['mean']:.2f} +- {100 * result['ci95']:.2f}"


def mean_ci_over_seeds(values) -> tuple[float, float | None]:
    """Mean of per-seed values and its 95% t-interval half-width.

    The half-width is None for a single seed (no spread to estimate).
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    t = stats.t.ppf(0.975, n - 1)
    return mean, float(t) * math.sqrt(var / n)


def paired_row(values) -> list | None:
    """Cells comparing weightings over the seeds of `values`.

    `values` maps `(seed, weighting)` to an accuracy in percent. Returns
    `[seeds, uniform per seed, agreement per seed, differences per seed,
    mean difference +- its 95% t-interval over seeds, paired t-test p,
    Wilcoxon signed-rank p]` (the cells of `PAIRED_HEADER`; the tests'
    cells are `-` with fewer than two seeds), or None when no seed has
    both weightings.
    """
    seeds = sorted(
        s for s, w in values if w == "uniform" and (s, "agreement") in values
    )
    if not seeds:
        return None
    uniform = [values[(s, "uniform")] for s in seeds]
    agreement = [values[(s, "agreement")] for s in seeds]
    diffs = [a - u for a, u in zip(agreement, uniform)]
    mean, ci = mean_ci_over_seeds(diffs)
    if len(diffs) < 2:
        t_cell = wilcoxon_cell = "-"
    else:
        t_cell = f"{paired_t_p(diffs):.3f}"
        p, floor = wilcoxon_p(diffs)
        wilcoxon_cell = f"{p:.3f} (smallest possible {floor:.3f})"
    return [
        ", ".join(map(str, seeds)),
        " / ".join(f"{u:.2f}" for u in uniform),
        " / ".join(f"{a:.2f}" for a in agreement),
        " / ".join(f"{d:+.2f}" for d in diffs),
        f"{mean:+.2f}" + ("" if ci is None else f" +- {ci:.2f}"),
        t_cell,
        wilcoxon_cell,
    ]


# Differences closer than this are ties (accuracies are ratios of test
# counts, so equal differences can differ in their last bits).
_TIE = 1e-9


def paired_t_p(diffs) -> float:
    """Two-sided p-value of the paired t-test that the mean of `diffs` is 0.

    Differences without spread give 1 when all are 0 and 0 otherwise.
    """
    diffs = [float(d) for d in diffs]
    if max(diffs) - min(diffs) <= _TIE * max(1.0, max(map(abs, diffs))):
        return 1.0 if all(abs(d) <= _TIE for d in diffs) else 0.0
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def wilcoxon_p(diffs) -> tuple[float, float]:
    """Exact two-sided Wilcoxon signed-rank p-value of `diffs`, and its floor.

    Zero differences are dropped (Wilcoxon's convention); tied absolute
    differences share their mean rank. The p-value is the share of the
    2^n sign patterns of the ranks whose smaller rank sum is at most the
    observed one, enumerated exactly (so at most 20 nonzero differences).
    The floor, 2 / 2^n, is the p-value when every difference has the same
    sign: with n = 5 pairs no outcome can give p below 0.0625.
    """
    nonzero = np.array([d for d in diffs if abs(d) > _TIE], dtype=np.float64)
    n = len(nonzero)
    if n == 0:
        return 1.0, 1.0
    if n > 20:
        raise ValueError(
            f"wilcoxon_p enumerates 2^n sign patterns; n (nonzero "
            f"differences) must be at most 20, got {n}."
        )
    # Ties share their mean rank.
    ranks = stats.rankdata(np.round(np.abs(nonzero) / _TIE))
    total = ranks.sum()
    observed = ranks[nonzero > 0].sum()
    observed = min(observed, total - observed)
    patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    positive = patterns @ ranks
    smaller = np.minimum(positive, total - positive)
    p = float(np.mean(smaller <= observed + 1e-9))
    return p, 2.0 / 2**n


PAIRED_HEADER = [
    "seeds",
    "uniform %",
    "agreement %",
    "agreement - uniform, per seed",
    "mean difference, 95% CI over seeds",
    "paired t-test p",
    "Wilcoxon signed-rank p",
]
