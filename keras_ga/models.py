"""Base models of the few-shot literature, shared by examples and benchmarks.

- `conv4`: the 4-block convolutional network of Vinyals et al. (2016), as
  used by MAML (Finn et al. 2017) and Reptile (Nichol et al. 2018): four
  blocks of [3x3 convolution, BatchNormalization, ReLU, 2x2 max-pooling],
  then a dense softmax-free classifier (logits). 64 filters for Omniglot,
  32 for miniImageNet.
- `mlp`: the fully connected regressor of the sine-wave experiments
  (1 -> 40 -> 40 -> 1 in MAML, 1 -> 64 -> 64 -> 1 in the gradient agreement
  paper).

BatchNormalization is `keras_ga.layers.BatchNormalization`, whose second
derivatives are exact, so `MetaModel` has nothing to swap; max-pooling is
`keras_ga.layers.MaxPooling2D`, the stock layer with second derivatives
that run on oneDNN's pooling kernels, which shortens a second-order MAML
step on CPU (figures in `benchmarks/RESULTS.md`, "Max-pooling kernels").

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import keras
import numpy as np

from keras_ga import _checks
from keras_ga.batch_norm import BatchNormalization
from keras_ga.pooling import MaxPooling2D

# How conv4's blocks halve the feature map (see `conv4`).
DOWNSAMPLING = ("max_pool", "stride")


def conv4(
    input_shape: Sequence[int],
    num_classes: int,
    filters: int = 64,
    *,
    blocks: int = 4,
    global_pool: bool = False,
    bn_momentum: float = 0.99,
    downsample: str = "max_pool",
    batch_norm_steps: int | None = None,
    per_step_batch_norm_weights: bool = False,
    name: str = "conv4",
) -> keras.Sequential:
    """The conv4 few-shot classifier; outputs logits.

    Args:
        input_shape: the shape of one example, `(height, width, channels)`,
            e.g. `(28, 28, 1)` for Omniglot, `(84, 84, 3)` for miniImageNet.
        num_classes: output classes (the `ways` of the tasks).
        filters: channels of every convolution (64 Omniglot, 32
            miniImageNet).
        blocks: number of conv blocks.
        global_pool: average the last feature map over space before the
            classifier (MAML's Omniglot network) instead of flattening it
            (MAML's miniImageNet network). Averaging keeps the classifier's
            input at `filters` features, which lets the large inner
            learning rates of MAML (0.4) stay stable.
        bn_momentum: momentum of the BatchNormalization moving statistics
            (Keras' default 0.99). They start at mean 0, variance 1 and
            need a few hundred meta-iterations at 0.99 to forget that
            start; non-transductive evaluation of a short run is better
            served by 0.9.
        downsample: `"max_pool"` (stride-1 convolutions, then 2x2
            max-pooling) or `"stride"` (stride-2 convolutions).
        batch_norm_steps: `None`, or per-step BatchNorm (MAML++'s BNRS)
            for this many inner steps: each inner step normalises with
            its own moving statistics (see `keras_ga.batch_norm`).
        per_step_batch_norm_weights: with `batch_norm_steps`, per-step
            scale and offset too (MAML++'s BNWB).
        name: the model's name.

    Returns:
        A built `keras.Sequential`.

    Raises:
        ValueError: for a non-positive `num_classes`, `filters` or `blocks`,
            an `input_shape` that is not `(height, width, channels)`, or
            an unknown `downsample`.

    Examples:
        >>> model = conv4((28, 28, 1), num_classes=5)
        >>> model.output_shape
        (None, 5)
        >>> conv4((28, 28, 1), 5, downsample="stride").layers[0].strides
        (2, 2)
    """
    _checks.check_positive_int("num_classes", num_classes)
    _checks.check_one_of("downsample", downsample, DOWNSAMPLING)
    _checks.check_positive_int("filters", filters)
    _checks.check_positive_int("blocks", blocks)
    shape = _shape("input_shape", input_shape, ("height", "width", "channels"))
    layers = [keras.Input(shape)]
    strides = 2 if downsample == "stride" else 1
    for i in range(blocks):
        layers += [
            keras.layers.Conv2D(
                filters, 3, strides, padding="same", name=f"conv{i}"
            ),
            BatchNormalization(
                momentum=bn_momentum,
                steps=batch_norm_steps,
                per_step_weights=per_step_batch_norm_weights,
                name=f"bn{i}",
            ),
            keras.layers.ReLU(name=f"relu{i}"),
        ]
        if downsample == "max_pool":
            layers.append(MaxPooling2D(2, padding="same", name=f"pool{i}"))
    if global_pool:
        layers.append(keras.layers.GlobalAveragePooling2D(name="pool"))
    else:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name=name)


def mlp(
    input_shape: int | Sequence[int] | None = None,
    output_dim: int = 1,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str = "relu",
    name: str = "mlp",
    input_dim: int | None = None,
) -> keras.Sequential:
    """A fully connected network `inputs -> *hidden -> output_dim`.

    Args:
        input_shape: the shape of one example, as for `conv4`: a tuple such
            as `(1,)` (the default) or `(28, 28, 1)`, or an int `d` for
            `(d,)`. Examples of more than one axis are flattened first.
        output_dim: outputs (linear).
        hidden: widths of the hidden layers.
        activation: activation of the hidden layers.
        name: the model's name.
        input_dim: deprecated; `input_dim=d` is `input_shape=(d,)`.

    Returns:
        A built `keras.Sequential`.

    Raises:
        ValueError: for a non-positive size, or both `input_shape` and
            `input_dim`.

    Examples:
        >>> mlp((1,), 1, (64, 64)).count_params()
        4353
    """
    if input_dim is not None:
        if input_shape is not None:
            raise ValueError(
                "Pass `input_shape` only (`input_dim` is its deprecated "
                f"1-D form). Received: input_shape={input_shape!r}, "
                f"input_dim={input_dim!r}."
            )
        warnings.warn(
            "`input_dim` is deprecated: pass `input_shape=(input_dim,)`, as "
            "for `conv4`.",
            DeprecationWarning,
            stacklevel=2,
        )
        _checks.check_positive_int("input_dim", input_dim)
        input_shape = (input_dim,)
    shape = _shape("input_shape", (1,) if input_shape is None else input_shape)
    _checks.check_positive_int("output_dim", output_dim)
    for width in hidden:
        _checks.check_positive_int("hidden", width)
    layers = [keras.Input(shape)]
    if len(shape) > 1:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers += [
        keras.layers.Dense(width, activation=activation, name=f"dense{i}")
        for i, width in enumerate(hidden)
    ]
    layers.append(keras.layers.Dense(output_dim, name="output"))
    return keras.Sequential(layers, name=name)


def _shape(name: str, value, axes: tuple[str, ...] = ()) -> tuple[int, ...]:
    """`value` (an int or a sequence of ints, all >= 1) as a shape tuple.

    With `axes`, the shape must have exactly those axes.
    """
    shape = (value,) if isinstance(value, (int, np.integer)) else value
    try:
        shape = None if isinstance(shape, str) else tuple(shape)
    except TypeError:
        shape = None
    ok = shape is not None and len(shape) >= 1
    ok = ok and (not axes or len(shape) == len(axes))
    ok = ok and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
        for d in shape
    )
    if not ok:
        rule = f"({', '.join(axes)})" if axes else "an int or a tuple of ints"
        raise ValueError(
            f"`{name}` must be {rule}, all positive: the shape of one "
            f"example. Received: {name}={value!r}"
        )
    return tuple(int(d) for d in shape)
