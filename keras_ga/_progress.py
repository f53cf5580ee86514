"""Progress bars for the long steps: decoding datasets, meta-testing."""

from __future__ import annotations

import sys

import keras

VERBOSE = (0, 1, 2, "auto")


def resolve_verbose(verbose) -> int:
    """`verbose` as 0, 1 or 2; `"auto"` is 1 on a terminal, else 2.

    With 2, `keras.utils.Progbar` writes one line when the bar finishes
    instead of rewriting one line in place, which suits redirected logs.

    Raises:
        ValueError: unless `verbose` is 0, 1, 2 or `"auto"`.
    """
    if isinstance(verbose, bool) or verbose not in VERBOSE:
        raise ValueError(
            f"`verbose` must be one of {VERBOSE}. "
            f"Received: verbose={verbose!r}."
        )
    if verbose == "auto":
        isatty = getattr(sys.stdout, "isatty", None)
        return 1 if isatty is not None and isatty() else 2
    return verbose


def progbar(total, unit_name: str, verbose="auto"):
    """A `keras.utils.Progbar` over `total` units, or `None` for silence."""
    verbose = resolve_verbose(verbose)
    if not verbose:
        return None
    return keras.utils.Progbar(total, verbose=verbose, unit_name=unit_name)


def finish(bar, current: int) -> None:
    """Ends `bar` at `current` with a line break.

    The target becomes `current`, the count actually done, so that the last
    line reads `T/T` even where the target was unknown or an estimate.
    """
    if bar is None:
        return
    bar.target = current
    bar.update(current, finalize=True)
