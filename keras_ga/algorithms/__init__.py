"""Meta-learning algorithms as per-task rules, and their registry.

Each algorithm is one `Algorithm` subclass in its own module: a rule that
adapts theta to one task and says what the outer step receives from it
(see `base`). `MetaModel`'s `algo` argument is the `name` of a registered
rule; `names()` lists them, `get(name)` returns one.

- `"maml"`: `MAML`, second order (Finn et al., 2017).
- `"fomaml"`: `FOMAML`, first order (Finn et al., 2017).
- `"reptile"`: `Reptile` (Nichol et al., 2018).

Adding an algorithm means adding one rule and registering it; nothing else
changes:

```python
@keras_ga.algorithms.register
class MyRule(keras_ga.algorithms.Algorithm):
    name = "my_rule"

    def train(self, theta, learner):
        phi, _ = learner.adapt(theta)
        query = learner.query(phi)
        grads = keras_ga.algorithms.difference(theta, phi)
        return keras_ga.algorithms.task_results(theta, phi, grads, query)

model = keras_ga.MetaModel(base, algo="my_rule")
```
"""

from __future__ import annotations

from keras_ga import _checks
from keras_ga.algorithms.base import Algorithm
from keras_ga.algorithms.base import TaskResults
from keras_ga.algorithms.base import difference
from keras_ga.algorithms.base import query_gradient
from keras_ga.algorithms.base import task_results
from keras_ga.algorithms.base import through_adaptation
from keras_ga.algorithms.fomaml import FOMAML
from keras_ga.algorithms.maml import MAML
from keras_ga.algorithms.reptile import Reptile

_REGISTRY: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Registers an `Algorithm` subclass under its `name`; a decorator.

    Raises:
        TypeError: if `cls` is not an `Algorithm` subclass.
        ValueError: if its `name` is empty or already registered.

    Examples:
        Reptile without its rule for the moving statistics, under a new name:

        >>> @keras_ga.algorithms.register
        ... class PlainReptile(keras_ga.algorithms.Algorithm):
        ...     name = "plain_reptile"
        ...
        ...     def train(self, theta, learner):
        ...         phi, _ = learner.adapt(theta)
        ...         grads = keras_ga.algorithms.difference(theta, phi)
        ...         query = learner.query(phi)
        ...         return keras_ga.algorithms.task_results(
        ...             theta, phi, grads, query)
        >>> model = keras_ga.MetaModel(
        ...     keras_ga.mlp((1,), 1, (8,)), algo="plain_reptile")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> batch = next(iter(keras_ga.datasets.sine_tasks(
        ...     shots=5, queries=5, meta_batch_size=4, seed=0)))
        >>> model.run_tasks(batch, training=True).loss.shape
        TensorShape([4])
    """
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(
            "`cls` must be a subclass of keras_ga.algorithms.Algorithm. "
            f"Received: cls={cls!r}"
        )
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(
            "`name` of an algorithm must be a non-empty string. "
            f"Received: name={name!r} on {cls.__name__}"
        )
    if name in _REGISTRY:
        raise ValueError(
            f"`name` must be unique: {name!r} is already registered by "
            f"{_REGISTRY[name].__name__}. Received: name={name!r} on "
            f"{cls.__name__}"
        )
    _REGISTRY[name] = cls
    return cls


def names() -> tuple[str, ...]:
    """The names of the registered algorithms, in registration order.

    Examples:
        >>> keras_ga.algorithms.names()[:3]  # the built-in rules come first
        ('maml', 'fomaml', 'reptile')
    """
    return tuple(_REGISTRY)


def get(name: str) -> Algorithm:
    """The registered algorithm called `name`.

    Raises:
        ValueError: for a name that is not registered (the message lists
            the registered ones, as for `MetaModel`'s `algo`).

    Examples:
        >>> rule = keras_ga.algorithms.get("fomaml")
        >>> type(rule).__name__, rule.name
        ('FOMAML', 'fomaml')
    """
    _checks.check_one_of("algo", name, list(names()))
    return _REGISTRY[name]()


register(MAML)
register(FOMAML)
register(Reptile)

__all__ = [
    "FOMAML",
    "MAML",
    "Algorithm",
    "Reptile",
    "TaskResults",
    "difference",
    "get",
    "names",
    "query_gradient",
    "register",
    "task_results",
    "through_adaptation",
]
