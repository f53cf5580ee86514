"""The workloads of the speed benchmarks, shared by keras_ga and its peers.

Plain data and numpy, so that keras_ga's side (`benchmarks/_keras.py`) and
the PyTorch peers (`benchmarks/_torch_common.py`, `torch_reference.py`,
`l2l_reference.py`) build the same networks, run the same algorithm with
the same learning rates and read the same random inputs. This module
imports no side; every side imports it.

- Omniglot conv4: 64 filters, 28x28x1 inputs, BatchNorm on batch
  statistics, 2x2 max-pooling ("same" padding); 5-way 1-shot with 15
  queries per class; inner learning rate 0.4.
- Sine MLP 1-64-64-1 (ReLU), 10 support and 10 query examples per task;
  inner learning rate 0.01.

Every workload trains with uniform weighting, Adam (learning rate 1e-3)
as the outer optimizer and inner SGD on the whole support set (Reptile
too), and computes the query loss after adaptation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ALGOS = ("maml", "fomaml", "reptile")
OUTER_LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Problem:
    """A family of tasks: the network, the episode shapes, the inner rate.

    Attributes:
        name: `"omniglot"` or `"sine"`.
        network: `"conv4"` or `"mlp"`.
        input_shape: one example's shape, channels last.
        outputs: classes (`ways`) of a classifier, or regression outputs.
        support: support examples per task.
        query: query examples per task.
        inner_learning_rate: the inner SGD learning rate.
        width: filters of every conv4 layer, or the MLP's hidden widths.
        classification: cross-entropy on integer labels, else mean squared
            error.
    """

    name: str
    network: str
    input_shape: tuple[int, ...]
    outputs: int
    support: int
    query: int
    inner_learning_rate: float
    width: int
    classification: bool


OMNIGLOT = Problem(
    name="omniglot",
    network="conv4",
    input_shape=(28, 28, 1),
    outputs=5,
    support=5,
    query=75,
    inner_learning_rate=0.4,
    width=64,
    classification=True,
)
SINE = Problem(
    name="sine",
    network="mlp",
    input_shape=(1,),
    outputs=1,
    support=10,
    query=10,
    inner_learning_rate=0.01,
    width=64,
    classification=False,
)
MLP_DEPTH = 2  # hidden layers of the sine MLP


@dataclasses.dataclass(frozen=True)
class Workload:
    """A problem, an algorithm, its inner steps and the meta-batch size."""

    problem: Problem
    algo: str
    inner_steps: int
    meta_batch_size: int

    def describe(self) -> dict:
        """The workload as flat JSON-ready fields."""
        return {
            "problem": self.problem.name,
            "algo": self.algo,
            "inner_steps": self.inner_steps,
            "meta_batch_size": self.meta_batch_size,
        }


WORKLOADS = {
    "omniglot_maml1": Workload(OMNIGLOT, "maml", 1, 32),
    "omniglot_maml5": Workload(OMNIGLOT, "maml", 5, 32),
    "omniglot_fomaml5": Workload(OMNIGLOT, "fomaml", 5, 32),
    "omniglot_reptile5": Workload(OMNIGLOT, "reptile", 5, 32),
    "sine_maml5_n10": Workload(SINE, "maml", 5, 10),
    "sine_maml5_n32": Workload(SINE, "maml", 5, 32),
}


def get(name: str, **overrides) -> Workload:
    """The workload `name` with the fields in `overrides` that are not None.

    Raises:
        ValueError: for an unknown `name` or `algo`.
    """
    if name not in WORKLOADS:
        raise ValueError(
            f"`name` must be one of {sorted(WORKLOADS)}. Received: "
            f"name={name!r}"
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes.get("algo", ALGOS[0]) not in ALGOS:
        raise ValueError(
            f"`algo` must be one of {list(ALGOS)}. Received: "
            f"algo={changes['algo']!r}"
        )
    return dataclasses.replace(WORKLOADS[name], **changes)


def episode(workload: Workload, seed: int = 0) -> dict[str, np.ndarray]:
    """A random meta-batch of the workload's shapes (channels last).

    Returns:
        `support_x`, `support_y`, `query_x`, `query_y`: float32 inputs
        `[N, examples, *input_shape]` in [0, 1); int32 labels `[N,
        examples]` below `outputs` for a classifier, else float32 targets
        `[N, examples, outputs]`.
    """
    problem, n = workload.problem, workload.meta_batch_size
    rng = np.random.default_rng(seed)
    batch = {}
    for part, size in (("support", problem.support), ("query", problem.query)):
        batch[f"{part}_x"] = rng.random((n, size, *problem.input_shape), "f4")
        if problem.classification:
            labels = rng.integers(0, problem.outputs, (n, size))
            batch[f"{part}_y"] = labels.astype(np.int32)
        else:
            batch[f"{part}_y"] = rng.random((n, size, problem.outputs), "f4")
    return batch
