"""Named sine-regression configurations (`python -m examples.sine`).

`reptile_10shot` is the gradient agreement paper's section 4.1, which
repeats the Reptile sine demonstration (its Figure 1): the MLP
1 -> 64 -> 64 -> 1, tasks `a sin(x - phi)`, test tasks of 10 support and
100 query points adapted with 5 (and 32) SGD steps of size 0.01 over all
10 support points, 1000 test tasks. Training tasks have 50 support points
and Reptile's five inner steps take them in mini-batches of 10 (one pass),
as the Reptile demonstration trains; meta-batch 10, Adam 3e-3 annealed
linearly to 0 over 20,000 meta-steps. The paper gives no training shots,
outer learning rate or budget: these were chosen by the sweep in
benchmarks/RESULTS.md ("Sine regression").
"""

from __future__ import annotations

from examples.configs import SineConfig

PRESETS = {
    "reptile_10shot": SineConfig(
        algo="reptile",
        shots=10,
        train_shots=50,
        queries=10,
        eval_queries=100,
        hidden=64,
        inner_steps=5,
        eval_inner_steps=5,
        inner_learning_rate=0.01,
        inner_batch_size=10,
        outer_learning_rate=3e-3,
        outer_schedule="linear",
        meta_batch_size=10,
        iterations=20000,
        eval_tasks=1000,
    ),
}
DEFAULT = "reptile_10shot"
