"""A resumable sweep of example runs: its common flags and its loop.

`benchmarks/omniglot_seeds.py` and `benchmarks/family_comparison.py` each
train a list of `(name, config)` runs, one folder per run under
`--out_dir`, and then print tables of the finished ones. `define_flags`
defines the flags they share; `run` applies `--cores` and trains the runs
that have no `results.json` yet (an unfinished run resumes from its
backup), unless `--table` asks for the tables only.
"""

from __future__ import annotations

import os

from absl import flags

import keras_ga


def define_flags(default_seeds: list[str]) -> None:
    """Defines `--out_dir`, `--seeds`, `--data_dir`, `--cores`, `--table`."""
    flags.DEFINE_string(
        "out_dir", None, "Folder of the runs, one sub-folder per run."
    )
    flags.DEFINE_list("seeds", default_seeds, "Seeds (initial weights, tasks).")
    flags.DEFINE_string(
        "data_dir",
        None,
        "Data root holding omniglot/; default $KERAS_GA_DATA, else "
        "~/.keras_ga/data.",
    )
    flags.DEFINE_integer(
        "cores",
        0,
        "keras_ga.set_cpu_threads(cores): one thread per op, this many ops "
        "at once (1 to run two sweeps side by side on two cores); 0 keeps "
        "TensorFlow's defaults.",
    )
    flags.DEFINE_bool(
        "table", False, "Only print the tables of the runs in `--out_dir`."
    )
    flags.mark_flag_as_required("out_dir")
    flags.register_validator(
        "seeds",
        lambda seeds: all(s.isdigit() for s in seeds),
        "--seeds must list non-negative integers.",
    )


def epoch_length(iterations: int, epochs: int) -> int:
    """Meta-steps per epoch of a run of `iterations` in `epochs` epochs.

    Raises:
        ValueError: when `epochs` does not divide `iterations`.
    """
    if iterations % epochs:
        raise ValueError(
            "`--epochs` must divide `--iterations`. Received: "
            f"epochs={epochs}, iterations={iterations}."
        )
    return iterations // epochs


def run(runs) -> None:
    """Trains and meta-tests each `(name, config)` of `runs` not yet done.

    A run lives in `<--out_dir>/<name>/`
    (`examples.train.train_and_evaluate`) and is done once its
    `results.json` exists. Nothing trains with `--table`.
    """
    from examples import train

    values = flags.FLAGS
    if values.cores:
        keras_ga.set_cpu_threads(values.cores)
    if values.table:
        return
    for name, config in runs:
        run_dir = os.path.join(values.out_dir, name)
        if not os.path.exists(os.path.join(run_dir, "results.json")):
            train.train_and_evaluate(config, run_dir)
