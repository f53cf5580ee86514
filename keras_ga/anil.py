"""ANIL: only the named layers adapt in the inner loop.

`MetaModel(..., adapt_layers=["logits"])` adapts the weights of the named
layers alone (ANIL, "almost no inner loop", Raghu et al. 2020: the head
alone); the other weights are meta-learned by the outer step only. The
inner optimizer, its carried moments and the learned inner rates
(`keras_ga.inner_rates`) then cover the adapted weights only.

The outer gradient of a weight that does not adapt is that of the query
loss through the adapted weights: for second-order MAML it includes the
path through the inner steps (the support features feed the head's inner
gradients), but no second derivative of a layer that does not adapt is
taken. Reptile is refused: its outer gradient theta - theta_i is zero for
the weights that do not adapt, which would never train (to freeze layers,
set their `trainable` to False).

The speed: when `model` is a `keras.Sequential`, its layers before the
first adapting one (the body) run once per task on the support set and the
inner steps run the remaining layers (the head) on those features, so an
inner step costs a pass of the head alone. The body's features are reused
only where that gives the same results as running the whole model at every
step: the body has no random layer (Dropout), and a body with batch
statistics (BatchNormalization) is reused only when every inner step takes
the whole support set. Otherwise, and for functional or subclassed models,
every step runs the whole model, with the gradients of the adapted weights
alone. The query passes run the whole model.

Example:

```python
base = keras_ga.conv4(num_classes=5)
model = keras_ga.MetaModel(base, algo="maml", adapt_layers=["logits"])
```

References:
    Raghu, Raghu, Bengio, Vinyals. Rapid Learning or Feature Reuse?
    Towards Understanding the Effectiveness of MAML. ICLR 2020.
"""

from __future__ import annotations

import dataclasses

import keras

from keras_ga import batch_norm


@dataclasses.dataclass(frozen=True, eq=False)
class Partition:
    """Which weights of a model adapt, and its body and head if split.

    Indices are positions in the model's `trainable_variables` (`theta`) or
    `non_trainable_variables` (`state`).

    Attributes:
        adapted: the indices of the weights that adapt, in order.
        body: the layers before the first adapting one, as a
            `keras.Sequential`, or `None` when the model is not split.
        head: the other layers, as a `keras.Sequential` taking the body's
            outputs, or `None`.
        body_theta: the indices of the body's weights.
        body_state: the indices of the body's non-trainable variables.
        head_theta: the indices of the head's weights.
        head_state: the indices of the head's non-trainable variables.
        random_body: whether a body layer draws random numbers (Dropout)
            or depends on the inner step (per-step BatchNorm).
        batch_statistics_body: whether the body normalises with batch
            statistics in training.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8, 8))
        >>> head = base.layers[-1].name  # the output layer
        >>> part = keras_ga.anil.partition(base, (head,))
        >>> part.adapted  # its kernel and bias
        (4, 5)
        >>> len(part.body.layers)  # the two hidden layers run once per task
        2
        >>> part.reuses_body(batch_size=5, support_size=10)
        True
    """

    adapted: tuple
    body: keras.Model | None = None
    head: keras.Model | None = None
    body_theta: tuple = ()
    body_state: tuple = ()
    head_theta: tuple = ()
    head_state: tuple = ()
    random_body: bool = False
    batch_statistics_body: bool = False

    def adapted_of(self, theta) -> list:
        """The adapted weights' entries of `theta`."""
        return [theta[i] for i in self.adapted]

    def merge(self, theta, adapted) -> list:
        """`theta` with its adapted weights replaced by `adapted`."""
        merged = list(theta)
        for i, value in zip(self.adapted, adapted):
            merged[i] = value
        return merged

    def merge_state(self, state, body_state, head_state) -> list:
        """`state` with a split model's body and head states put back."""
        merged = list(state)
        for i, value in zip(self.body_state, body_state):
            merged[i] = value
        for i, value in zip(self.head_state, head_state):
            merged[i] = value
        return merged

    def reuses_body(self, batch_size: int, support_size: int) -> bool:
        """Whether the inner steps may run the head on cached features."""
        if self.body is None or self.random_body:
            return False
        return batch_size == support_size or not self.batch_statistics_body


def check(model: keras.Model, adapt_layers, algo: str) -> tuple | None:
    """The checked `adapt_layers` of `MetaModel`, as a tuple, or `None`.

    Raises:
        TypeError: unless `adapt_layers` is `None` or a list or tuple of
            layer names (strings).
        ValueError: for an empty list, a repeated name, a name that is not
            a layer of `model` with trainable weights, or `algo="reptile"`.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> keras_ga.anil.check(base, ["output"], "maml")
        ('output',)
        >>> keras_ga.anil.check(base, ["head"], "maml")
        Traceback (most recent call last):
          ...
        ValueError: `adapt_layers` must name layers of the model with
        trainable weights, among ['dense0', 'output']. Received:
        adapt_layers=['head'] ('head' is not one)
    """
    if adapt_layers is None:
        return None
    if isinstance(adapt_layers, str) or not isinstance(
        adapt_layers, (list, tuple)
    ):
        raise TypeError(
            "`adapt_layers` must be None or a list of layer names. "
            f"Received: adapt_layers={adapt_layers!r}"
        )
    if not adapt_layers:
        raise ValueError(
            "`adapt_layers` must name at least one layer (None adapts every "
            "layer). Received: adapt_layers=[]"
        )
    for name in adapt_layers:
        if not isinstance(name, str):
            raise TypeError(
                "`adapt_layers` must hold layer names (strings). Received: "
                f"adapt_layers={adapt_layers!r}"
            )
    if len(set(adapt_layers)) != len(adapt_layers):
        raise ValueError(
            "`adapt_layers` must not repeat a name. Received: "
            f"adapt_layers={adapt_layers!r}"
        )
    weighted = {
        layer.name for layer in _layers(model) if layer.trainable_weights
    }
    for name in adapt_layers:
        if name not in weighted:
            raise ValueError(
                "`adapt_layers` must name layers of the model with trainable "
                f"weights, among {sorted(weighted)}. Received: "
                f"adapt_layers={list(adapt_layers)!r} ({name!r} is not one)"
            )
    if algo == "reptile":
        raise ValueError(
            "`adapt_layers` cannot be used with algo='reptile': Reptile's "
            "outer gradient theta - theta_i is zero for the weights that do "
            "not adapt, so they would never be trained (set "
            "`layer.trainable = False` to freeze layers instead). Received: "
            f"algo='reptile', adapt_layers={list(adapt_layers)!r}"
        )
    return tuple(adapt_layers)


def partition(model: keras.Model, adapt_layers) -> Partition | None:
    """The `Partition` of `model` for checked `adapt_layers` (see `check`).

    Returns `None` for `adapt_layers=None` (every weight adapts). A
    `keras.Sequential` is split into its body (the layers before the
    first adapting one) and its head; other models are not split.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> keras_ga.anil.partition(base, (base.layers[-1].name,)).adapted
        (2, 3)
        >>> keras_ga.anil.partition(base, None) is None
        True
    """
    if adapt_layers is None:
        return None
    theta = _positions(model.trainable_variables)
    adapted = [
        theta[id(v)]
        for layer in _layers(model)
        if layer.name in adapt_layers
        for v in layer.trainable_variables
    ]
    adapted = tuple(sorted(adapted))
    if not isinstance(model, keras.Sequential) or not model.inputs:
        return Partition(adapted)
    layers = list(model.layers)
    cut = next(
        i for i, layer in enumerate(layers) if _adapts(layer, adapted, theta)
    )
    if cut == 0:
        return Partition(adapted)
    body_layers, head_layers = layers[:cut], layers[cut:]
    body = keras.Sequential(
        [
            keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype),
            *body_layers,
        ]
    )
    head = keras.Sequential(
        [
            keras.Input(body.output_shape[1:], dtype=body.outputs[0].dtype),
            *head_layers,
        ]
    )
    state = _positions(model.non_trainable_variables)
    return Partition(
        adapted,
        body=body,
        head=head,
        body_theta=tuple(theta[id(v)] for v in body.trainable_variables),
        body_state=tuple(state[id(v)] for v in body.non_trainable_variables),
        head_theta=tuple(theta[id(v)] for v in head.trainable_variables),
        head_state=tuple(state[id(v)] for v in head.non_trainable_variables),
        random_body=any(
            getattr(layer, "seed_generator", None) is not None
            for layer in body_layers
        )
        or batch_norm.has_per_step(body),
        batch_statistics_body=batch_norm.has_batch_norm(body),
    )


def adapted_variables(model: keras.Model, part: Partition | None) -> list:
    """The trainable variables of `model` that adapt (all without `part`).

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> part = keras_ga.anil.partition(base, (base.layers[-1].name,))
        >>> adapted = keras_ga.anil.adapted_variables(base, part)
        >>> [tuple(v.shape) for v in adapted]
        [(8, 1), (1,)]
    """
    return adapted(part, model.trainable_variables)


def adapted(part: Partition | None, theta) -> list:
    """The entries of `theta` that adapt (all of them without `part`).

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> part = keras_ga.anil.partition(base, (base.layers[-1].name,))
        >>> keras_ga.anil.adapted(part, ["w0", "b0", "w1", "b1"])
        ['w1', 'b1']
        >>> keras_ga.anil.adapted(None, ["w0", "b0"])
        ['w0', 'b0']
    """
    return list(theta) if part is None else part.adapted_of(theta)


def _positions(variables) -> dict:
    return {id(v): i for i, v in enumerate(variables)}


def _adapts(layer, adapted, theta) -> bool:
    return any(theta[id(v)] in adapted for v in layer.trainable_variables)


def _layers(model):
    """Every layer of `model`, nested ones included."""
    return list(model._flatten_layers(include_self=False, recursive=True))
