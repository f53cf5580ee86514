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
that run on oneDNN's pooling kernels (about 15% off a 5-inner-step conv4
MAML step on a 2-core CPU).

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_ga import _checks
from keras_ga.batch_norm import BatchNormalization
from keras_ga.pooling import MaxPooling2D


def conv4(
    input_shape: Sequence[int],
    num_classes: int,
    filters: int = 64,
    *,
    blocks: int = 4,
    global_pool: bool = False,
    bn_momentum: float = 0.99,
    name: str = "conv4",
) -> keras.Sequential:
    """The conv4 few-shot classifier; outputs logits.

    Args:
        input_shape: `(height, width, channels)`, e.g. `(28, 28, 1)` for
            Omniglot, `(84, 84, 3)` for miniImageNet.
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
        name: the model's name.

    Returns:
        A built `keras.Sequential`.

    Raises:
        ValueError: for a non-positive `num_classes`, `filters` or `blocks`,
            or an `input_shape` that is not `(height, width, channels)`.

    Example:

    >>> model = conv4((28, 28, 1), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    _checks.check_positive_int("num_classes", num_classes)
    _checks.check_positive_int("filters", filters)
    _checks.check_positive_int("blocks", blocks)
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    layers = [keras.Input(tuple(input_shape))]
    for i in range(blocks):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}"),
            BatchNormalization(momentum=bn_momentum, name=f"bn{i}"),
            keras.layers.ReLU(name=f"relu{i}"),
            MaxPooling2D(2, padding="same", name=f"pool{i}"),
        ]
    if global_pool:
        layers.append(keras.layers.GlobalAveragePooling2D(name="pool"))
    else:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name=name)


def mlp(
    input_dim: int = 1,
    output_dim: int = 1,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str = "relu",
    name: str = "mlp",
) -> keras.Sequential:
    """A fully connected network `input_dim -> *hidden -> output_dim`.

    Args:
        input_dim: input features.
        output_dim: outputs (linear).
        hidden: widths of the hidden layers.
        activation: activation of the hidden layers.
        name: the model's name.

    Returns:
        A built `keras.Sequential`.

    Raises:
        ValueError: for a non-positive size.

    Example:

    >>> mlp(1, 1, (64, 64)).count_params()
    4353
    """
    _checks.check_positive_int("input_dim", input_dim)
    _checks.check_positive_int("output_dim", output_dim)
    for width in hidden:
        _checks.check_positive_int("hidden", width)
    layers = [keras.Input((input_dim,))]
    layers += [
        keras.layers.Dense(width, activation=activation, name=f"dense{i}")
        for i, width in enumerate(hidden)
    ]
    layers.append(keras.layers.Dense(output_dim, name="output"))
    return keras.Sequential(layers, name=name)
