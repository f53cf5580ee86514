"""Markdown tables and output files of the benchmark scripts."""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import time

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


# Two-sided 95% quantiles of Student's t with 1, 2, ... degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)


def mean_ci_over_seeds(values) -> tuple[float, float | None]:
    """Mean of per-seed values and its 95% t-interval half-width.

    The half-width is None for a single seed (no spread to estimate).
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    t = _T95[n - 2] if n - 2 < len(_T95) else 1.96
    return mean, t * math.sqrt(var / n)


def paired_row(values) -> list | None:
    """Cells comparing weightings over the seeds of `values`.

    `values` maps `(seed, weighting)` to an accuracy in percent. Returns
    `[seeds, uniform per seed, agreement per seed, differences per seed,
    mean difference +- its 95% t-interval over seeds]`, or None when no
    seed has both weightings.
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
    return [
        ", ".join(map(str, seeds)),
        " / ".join(f"{u:.2f}" for u in uniform),
        " / ".join(f"{a:.2f}" for a in agreement),
        " / ".join(f"{d:+.2f}" for d in diffs),
        f"{mean:+.2f}" + ("" if ci is None else f" +- {ci:.2f}"),
    ]


PAIRED_HEADER = [
    "seeds",
    "uniform %",
    "agreement %",
    "agreement - uniform, per seed",
    "mean difference, 95% CI over seeds",
]
