"""Markdown tables and output files of the benchmark scripts."""

from __future__ import annotations

import json
import os
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
