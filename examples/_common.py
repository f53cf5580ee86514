"""What the example scripts share: their flags and the CPU thread setting.

Every example defines its flags from its presets module
(`examples/configs/<example>.py`) with `define_flags`: `--preset` chooses
a named configuration, one flag per configuration field overrides that
field (enum flags for the fields with choices, so a wrong value stops the
script before anything runs), `--output_dir` names the run's folder, and
`--set_cpu_threads` sets TensorFlow's threads.
"""

from __future__ import annotations

import dataclasses
import typing

from absl import flags
from absl import logging

import keras_ga

# Fields that the example itself fixes (its dataset), not a flag.
_FIXED_FIELDS = ("dataset",)


def define_thread_flag(flag_values=flags.FLAGS) -> None:
    """Defines `--set_cpu_threads` in `flag_values`."""
    flags.DEFINE_bool(
        "set_cpu_threads",
        True,
        "Give TensorFlow one thread per op and as many ops at once as there "
        "are CPUs (keras_ga.set_cpu_threads): faster for task-parallel "
        "meta-training on a CPU. False keeps TensorFlow's default split.",
        flag_values=flag_values,
    )


def configure_threads(flag_values=flags.FLAGS) -> None:
    """Applies `--set_cpu_threads`; call first in an example's `main`.

    Where TensorFlow's runtime already runs (a script's `main` called from
    a test or a notebook), its thread split stays and a warning says so.
    """
    if not flag_values.set_cpu_threads:
        return
    try:
        keras_ga.set_cpu_threads()
    except RuntimeError as error:
        logging.warning("%s. Keeping TensorFlow's thread split.", error)


def define_flags(presets, flag_values=flags.FLAGS) -> None:
    """Defines an example's flags in `flag_values` from its presets module.

    Args:
        presets: a module of `examples/configs` with `PRESETS` (name to
            configuration) and `DEFAULT` (a name).
        flag_values: where the flags are defined.
    """
    default = presets.PRESETS[presets.DEFAULT]
    flags.DEFINE_enum(
        "preset",
        presets.DEFAULT,
        list(presets.PRESETS),
        f"Named configuration of {presets.__name__}; the flags of its fields "
        "override it one by one.",
        flag_values=flag_values,
    )
    hints = typing.get_type_hints(type(default))
    for field in dataclasses.fields(default):
        if field.name not in _FIXED_FIELDS:
            value = getattr(default, field.name)
            _define_field_flag(field, hints[field.name], value, flag_values)
    flags.DEFINE_string(
        "output_dir",
        None,
        "Folder of the run's files (created if needed).",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)
    define_thread_flag(flag_values)


def _define_field_flag(field, kind, default, flag_values) -> None:
    """Defines the flag of configuration `field` (of type `kind`)."""
    help_text = field.metadata["help"] + " Unset: the value of --preset."
    fv = {"flag_values": flag_values}
    if "choices" in field.metadata:
        choices = field.metadata["choices"]
        flags.DEFINE_enum(field.name, default, choices, help_text, **fv)
        return
    # An optional field (`int | None`) is a flag of its type, unset: None.
    kinds = [k for k in typing.get_args(kind) if k is not type(None)]
    if len(kinds) == 1:
        kind = kinds[0]
    define = {
        bool: flags.DEFINE_bool,
        int: flags.DEFINE_integer,
        float: flags.DEFINE_float,
    }.get(kind, flags.DEFINE_string)
    define(field.name, default, help_text, **fv)


def config_from_flags(presets, flag_values=flags.FLAGS):
    """The preset named by `--preset` with the fields given as flags."""
    config = presets.PRESETS[flag_values.preset]
    changes = {
        field.name: flag_values[field.name].value
        for field in dataclasses.fields(config)
        if field.name in flag_values and flag_values[field.name].present
    }
    return dataclasses.replace(config, **changes)
