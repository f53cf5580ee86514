"""Workarounds that need private Keras or TensorFlow APIs, in one place.

keras_ga uses only public APIs except through this module. Each function
here touches one private attribute or method; its comment says what it
works around and for which versions it was written (Keras 3.15,
TensorFlow 2.21), and it is guarded: when the private API is missing it
takes a public fallback or raises an error that says what to do.

`MetaModel._maybe_symbolic_build` overrides a private hook of Keras'
TensorFlow trainer and calls the first two functions below (through
`keras_ga.distribute.build_inputs`); a Keras version without that hook
never calls it, and its own build applies.

This module imports neither Keras nor TensorFlow, so that `batch_norm`,
which is written on `keras.ops`, keeps no TensorFlow import of its own.
"""

from __future__ import annotations


def explicit_strategy(model):
    """The `tf.distribute` strategy `model` was created under, or `None`.

    Works around: Keras 3's TensorFlow trainer (as of Keras 3.15) stores the
    strategy of the scope a model is created in as the private
    `Model._distribute_strategy` (`None` outside any scope), and its
    `_maybe_symbolic_build` tests that attribute; the public
    `Model.distribute_strategy` gives the default strategy instead of
    `None`, so it cannot tell "no scope" apart.

    Fallback: without the private attribute, the public strategy when it
    has several replicas (the only case the build workaround matters for),
    else `None`.
    """
    if hasattr(model, "_distribute_strategy"):
        return model._distribute_strategy
    strategy = model.distribute_strategy
    return strategy if strategy.num_replicas_in_sync > 1 else None


def first_distributed_batch(iterator):
    """The first batch of Keras' TensorFlow epoch iterator, or `None`.

    Works around: Keras 3's TensorFlow trainer (as of Keras 3.15) passes
    `Model._maybe_symbolic_build` (private) an epoch iterator that yields
    `(begin_step, end_step, iterator)` triples, whose iterator gives the
    per-replica batch (a `tf.distribute.DistributedValues` structure under
    a strategy). Only the first batch is read, as Keras itself does.

    Raises:
        RuntimeError: when the iterator yields something else (another
            Keras version): `fit` under `tf.distribute` then needs a
            Keras version whose iterator yields those triples.
    """
    for step in iterator:
        if not (isinstance(step, tuple) and len(step) == 3):
            raise RuntimeError(
                "keras_ga.MetaModel under tf.distribute supports Keras "
                "versions whose TensorFlow epoch iterator yields "
                "(begin_step, end_step, iterator), as Keras 3.15's does. "
                f"Received: an element of type {type(step).__name__}."
            )
        return next(step[2])
    return None


def in_multi_worker_mode(strategy) -> bool:
    """Whether a `MultiWorkerMirroredStrategy` spans several workers.

    Works around: TensorFlow (as of 2.21) has no public test for it;
    `strategy.extended._in_multi_worker_mode()` (private; `_num_workers >
    1`) is what TensorFlow and Keras use themselves.

    Fallback: count the chief and worker tasks of the strategy's public
    `cluster_resolver`.
    """
    check = getattr(strategy.extended, "_in_multi_worker_mode", None)
    if callable(check):
        return bool(check())
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(spec.get("chief", [])) + len(spec.get("worker", [])) > 1


def reduction_axes(layer, rank: int) -> list:
    """The axes a BatchNormalization `layer` normalises over.

    Works around: Keras 3's `BatchNormalization` (as of Keras 3.15) computes
    them in `build` and keeps them as the private `_reduction_axes`.

    Fallback: the same rule as Keras' `build`, every axis of an input of
    `rank` but `layer.axis`.
    """
    axes = getattr(layer, "_reduction_axes", None)
    if axes is not None:
        return axes
    return [i for i in range(rank) if i != layer.axis % rank]


def compile_metrics(model):
    """The metrics container `keras.Model.compile(metrics=...)` built.

    Works around: Keras 3 (as of Keras 3.15) resolves `compile(metrics=...)`
    into a private `CompileMetrics` container, `Model._compile_metrics`,
    which names metrics as the user gave them and resolves `"accuracy"` from
    the shapes at the first batch; callbacks find a metric's direction only
    inside such containers (`MonitorCallback._set_monitor_op`). `MetaModel`
    updates the container itself and lists it in `metrics`.

    Returns:
        The container, or `None` when `compile` got no metrics.

    Raises:
        RuntimeError: when Keras keeps its compiled metrics elsewhere (another
            Keras version): `MetaModel` metrics then need Keras 3.15's layout.
    """
    if not hasattr(model, "_compile_metrics"):
        raise RuntimeError(
            "keras_ga.MetaModel's `metrics` support Keras versions that keep "
            "compiled metrics in `Model._compile_metrics`, as Keras 3.15 "
            "does. Compile without `metrics`, or use such a Keras version."
        )
    return model._compile_metrics


_PREFIXED = {}


def prefixed_compile_metrics(container, metrics, prefix: str):
    """A new container of `container`'s kind whose metrics are prefixed.

    Works around: the class of Keras' compile-metrics container is private
    (`keras.src.trainers.compile_utils.CompileMetrics` in Keras 3.15); it is
    taken from the container `compile` built, and subclassed so that its
    metrics are renamed `prefix + name` when built. Its constructor takes
    `(metrics, weighted_metrics)` in Keras 3.15.
    """
    cls = type(container)
    if cls not in _PREFIXED:

        class Prefixed(cls):
            def build(self, y_true, y_pred):
                super().build(y_true, y_pred)
                for metric in self.metrics:
                    metric.name = self.prefix + metric.name

        _PREFIXED[cls] = Prefixed
    prefixed = _PREFIXED[cls](metrics, None)
    prefixed.prefix = prefix
    prefixed.name = prefix + container.name
    return prefixed
