"""Named sine-regression configurations (`python -m examples.sine`).

`reptile_10shot` is the gradient agreement paper's section 4.1: the MLP
1 -> 64 -> 64 -> 1, tasks `a sin(x - phi)` with 10 support and 10 query
points, Reptile with five inner SGD steps of size 0.01 over all 10 support
points, meta-batch 10, Adam 3e-3 annealed linearly to 0 over 20,000
meta-steps, 1000 test tasks after 5 and after 32 adaptation steps. The
paper gives no outer learning rate or budget: these were chosen by the
sweep in benchmarks/RESULTS.md ("Sine regression").
"""

from __future__ import annotations

from examples.configs import SineConfig

PRESETS = {
    "reptile_10shot": SineConfig(
        algo="reptile",
        shots=10,
        queries=10,
        eval_queries=100,
        hidden=64,
        inner_steps=5,
        eval_inner_steps=5,
        inner_learning_rate=0.01,
        outer_learning_rate=3e-3,
        outer_schedule="linear",
        meta_batch_size=10,
        iterations=20000,
        eval_tasks=1000,
    ),
}
DEFAULT = "reptile_10shot"
