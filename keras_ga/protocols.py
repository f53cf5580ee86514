"""The evaluation protocols: which batch the query predictions normalise over.

A meta-trained model with BatchNormalization predicts the query set of an
adapted test task in one of three ways; they give the same predictions for
a model without BatchNormalization and can differ by tens of points of
accuracy for one with it, so every result names its protocol:

- `"transductive"` (the default, and the protocol of the MAML and Reptile
  papers' main results): the query set is one batch and BatchNormalization
  normalises it with its own statistics, so the query predictions depend
  on each other.
- `"support_plus_query"` (the Reptile reference code's non-transductive
  protocol): each query example is predicted in a batch made of the support
  set plus that one example, with that batch's statistics, so no query
  example sees another. Q query examples cost Q forward passes of S + 1
  examples, run as one vectorized computation.
- `"moving_stats"`: BatchNormalization uses its moving statistics (what
  `keras.Model.predict` does), each query example predicted alone. Their
  value depends on the momentum and on what the training steps fed them.

Training always normalises with batch statistics.

Example:

```python
model = keras_ga.MetaModel(base, eval_protocol="support_plus_query")
fast = model.adapt(support_x, support_y)
keras_ga.protocols.predict(fast, support_x, query_x, "support_plus_query")
```

References:
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning
    Algorithms", 2018, section 6 and the code of openai/supervised-reptile
    (transductive and non-transductive evaluation).
"""

from __future__ import annotations

import warnings

import keras

from keras_ga import _checks
from keras_ga._optional import tensorflow as tf

TRANSDUCTIVE = "transductive"
SUPPORT_PLUS_QUERY = "support_plus_query"
MOVING_STATS = "moving_stats"
PROTOCOLS = (TRANSDUCTIVE, SUPPORT_PLUS_QUERY, MOVING_STATS)


def check(protocol: str, name: str = "protocol") -> str:
    """Returns `protocol` after checking it is one of `PROTOCOLS`.

    Args:
        protocol: the value to check.
        name: the argument it was given as, for the error message.

    Raises:
        ValueError: for a value that is not one of `PROTOCOLS`.

    Examples:
        >>> keras_ga.protocols.check("moving_stats")
        'moving_stats'
        >>> keras_ga.protocols.check("inductive", name="eval_protocol")
        Traceback (most recent call last):
          ...
        ValueError: `eval_protocol` must be one of ['transductive',
        'support_plus_query', 'moving_stats']. Received:
        eval_protocol='inductive'.
    """
    _checks.check_one_of(name, protocol, list(PROTOCOLS))
    return protocol


def from_transductive(transductive: bool) -> str:
    """The protocol of the deprecated `transductive` flag.

    `True` is `"transductive"`, `False` is `"moving_stats"` (what
    `transductive=False` always meant in keras_ga; the Reptile reference's
    non-transductive protocol is `"support_plus_query"`).

    Examples:
        >>> keras_ga.protocols.from_transductive(False)
        'moving_stats'
    """
    return TRANSDUCTIVE if transductive else MOVING_STATS


def resolve(protocol, transductive, default: str, name: str) -> str:
    """The protocol of a call taking both `name` and `transductive`.

    `protocol` wins when given; the deprecated `transductive` flag is used
    (with a `DeprecationWarning`) when only it is given; `default` when
    neither is.

    Raises:
        ValueError: when both are given, or for an unknown protocol.

    Examples:
        >>> keras_ga.protocols.resolve(None, None, "transductive", "protocol")
        'transductive'
        >>> keras_ga.protocols.resolve(
        ...     "moving_stats", None, "transductive", "protocol")
        'moving_stats'
    """
    if protocol is not None and transductive is not None:
        raise ValueError(
            f"Pass `{name}` only: `transductive` is its deprecated alias. "
            f"Received: {name}={protocol!r}, transductive={transductive!r}"
        )
    if transductive is not None:
        warn_transductive(name)
        return from_transductive(bool(transductive))
    return check(default if protocol is None else protocol, name)


def warn_transductive(name: str) -> None:
    """Warns that `transductive` is deprecated in favour of `name`.

    The `DeprecationWarning` names the caller of the function that calls
    this one.

    Args:
        name: the argument that replaces `transductive` (`"protocol"`,
            `"eval_protocol"`).

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     keras_ga.protocols.warn_transductive("protocol")
        >>> caught[0].category.__name__
        'DeprecationWarning'
    """
    warnings.warn(
        f"`transductive` is deprecated: use `{name}=` one of {PROTOCOLS} "
        "(`transductive=True` is 'transductive', `transductive=False` is "
        "'moving_stats').",
        DeprecationWarning,
        stacklevel=3,
    )


def forward(model, params, state, support_x, query_x, protocol: str):
    """Query outputs of a stateless pass under `protocol`.

    Args:
        model: a Keras model, called with `stateless_call`.
        params: its trainable weights, a list of tensors.
        state: its non-trainable weights, a list of tensors.
        support_x: the support inputs `[S, ...]` (used by
            `"support_plus_query"` only).
        query_x: the query inputs `[Q, ...]`.
        protocol: one of `PROTOCOLS`.

    Returns:
        `(outputs, new_state, losses)`: the query outputs `[Q, ...]`, the
        non-trainable state after the pass (`state` itself for
        `"support_plus_query"`) and the sum of the layers' own losses.

    Examples:
        >>> model = keras_ga.mlp((3,), 2, (4,))
        >>> params = [tf.convert_to_tensor(w) for w in model.trainable_weights]
        >>> outputs, state, losses = keras_ga.protocols.forward(
        ...     model, params, [], tf.zeros([5, 3]), tf.zeros([7, 3]),
        ...     "support_plus_query")
        >>> outputs.shape  # one row per query example
        TensorShape([7, 2])
    """
    if protocol != SUPPORT_PLUS_QUERY:
        outputs, new_state, losses = model.stateless_call(
            params,
            state,
            query_x,
            training=protocol == TRANSDUCTIVE,
            return_losses=True,
        )
        # Without batch statistics the state comes back as it went in;
        # `identity` makes it a tensor of the graph being built (a loop
        # body's outputs cannot be eager tensors).
        new_state = [tf.identity(s) for s in new_state]
        return outputs, new_state, sum(losses) if losses else 0.0
    return _support_plus_query(model, params, state, support_x, query_x)


def _support_plus_query(model, params, state, support_x, query_x):
    def one(x):
        batch = tf.concat([support_x, x[None]], axis=0)
        outputs, _, losses = model.stateless_call(
            params, state, batch, training=True, return_losses=True
        )
        loss = sum(losses) if losses else 0.0
        return outputs[-1], tf.cast(loss, params[0].dtype)

    # One pass per query example, batched over them (a loop only for ops
    # that cannot be batched).
    outputs, losses = tf.vectorized_map(
        one, query_x, fallback_to_while_loop=True
    )
    state = [tf.identity(s) for s in state]  # as in `forward`
    return outputs, state, tf.reduce_mean(losses)


def predict(model: keras.Model, support_x, query_x, protocol=TRANSDUCTIVE):
    """Predictions of `model` (for example `MetaModel.adapt`'s) for a query.

    Args:
        model: a built Keras model; its current weights are used and not
            changed (its moving statistics included).
        support_x: the support inputs `[S, ...]` the model adapted on.
        query_x: the query inputs `[Q, ...]`.
        protocol: one of `PROTOCOLS`.

    Returns:
        The query predictions `[Q, ...]`, as a tensor.

    Examples:
        Under `"support_plus_query"` a query example's prediction does not
        depend on the other query examples:

        >>> model = keras.Sequential([
        ...     keras.Input((3,)),
        ...     keras.layers.Dense(4),
        ...     keras_ga.layers.BatchNormalization(),
        ...     keras.layers.Dense(2),
        ... ])
        >>> x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
        >>> support_x, query_x = x[:5], x[5:]
        >>> together = keras_ga.protocols.predict(
        ...     model, support_x, query_x, "support_plus_query")
        >>> alone = keras_ga.protocols.predict(
        ...     model, support_x, query_x[:1], "support_plus_query")
        >>> np.allclose(together[:1], alone, atol=1e-5)
        True
    """
    check(protocol)
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    state = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
    outputs, _, _ = forward(
        model,
        params,
        state,
        tf.convert_to_tensor(support_x),
        tf.convert_to_tensor(query_x),
        protocol,
    )
    return outputs
