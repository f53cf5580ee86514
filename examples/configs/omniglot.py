"""Named Omniglot configurations (`python -m examples.omniglot --preset=`).

MAML and first-order MAML follow the MAML paper (Finn et al. 2017): 5-way,
one inner SGD step of size 0.4 in training and three at test, meta-batch
32; 20-way, five steps of size 0.1 in training and at test, meta-batch 16;
Adam 1e-3, 60k meta-steps; conv4 with max-pooling and global average
pooling.

Reptile follows the commands of the Reptile reference implementation
(openai/supervised-reptile, README, one per table entry of Nichol et al.
2018): conv4 with stride-2 convolutions and flattened features; inner Adam
with beta_1 = 0 whose moments carry across meta-steps; more examples per
class in training tasks than at test (`train_shots`); inner mini-batches
cycling through the support set; outer SGD whose meta-step is annealed
linearly to 0 over the run. `reptile_5way_1shot` is the transductive
1-shot 5-way command (the paper's 97.68%), `reptile_5way_1shot_nontrans`
the non-transductive one (95.39%, evaluated on the support set plus one
query example); `reptile_20way_1shot` (89.43% transductive, 88.14% not),
`reptile_5way_5shot` and `reptile_20way_5shot` the others. The
reference's training tasks have no query set (Reptile does not use one);
here each training task also has `queries` query examples per class, used
only for the logged training metrics.

`mamlpp_5way_1shot` and `mamlpp_20way_1shot` follow the MAML++ reference
configurations (Antoniou et al. 2019, HowToTrainYourMAMLPytorch's
`omniglot_maml++-omniglot_1_8_0.1_64_{5,20}_0.json`): second-order MAML
with five inner steps in training and at test, learned per-layer per-step
inner rates initialised to 0.1, the multi-step loss annealed over 10 epochs
of 500 meta-steps, meta-batch 8, one query example per class, Adam 1e-3
cosine-annealed to 1e-5 over 100 epochs of 500 meta-steps, conv4 with
max-pooling, per-step BatchNorm statistics and weights. Not reproduced:
MAML++'s own split of Omniglot's characters (these presets use the
Vinyals split).

Every preset uses gradient agreement weighting; `--weighting=uniform`
gives the plain algorithm. `--protocol=lake` trains on Omniglot's
background characters and tests on its evaluation characters, without
rotations (Lake et al.'s split). The full budgets take hours on a CPU; a
smaller `--iterations` gives a quick run.
"""

from __future__ import annotations

import dataclasses

from examples.configs import FewShotConfig
from examples.configs import reptile_command

_MAML_5WAY = FewShotConfig(
    dataset="omniglot",
    ways=5,
    shots=1,
    algo="maml",
    meta_batch_size=32,
    inner_steps=1,
    eval_inner_steps=3,
    inner_learning_rate=0.4,
    image_size=28,
    filters=64,
)
_MAML_20WAY = dataclasses.replace(
    _MAML_5WAY,
    ways=20,
    meta_batch_size=16,
    inner_steps=5,
    eval_inner_steps=5,
    inner_learning_rate=0.1,
)

_MAML_5WAY_5SHOT = dataclasses.replace(_MAML_5WAY, shots=5)
_MAML_20WAY_5SHOT = dataclasses.replace(_MAML_20WAY, shots=5)
_FOMAML = {"algo": "fomaml"}


_REPTILE = FewShotConfig(
    dataset="omniglot", downsample="stride", image_size=28, filters=64
)


def _reptile(ways, shots, **command):
    return reptile_command(_REPTILE, ways=ways, shots=shots, **command)


PRESETS = {
    "maml_5way_1shot": _MAML_5WAY,
    "maml_5way_5shot": _MAML_5WAY_5SHOT,
    "maml_20way_1shot": _MAML_20WAY,
    "maml_20way_5shot": _MAML_20WAY_5SHOT,
    "fomaml_5way_1shot": dataclasses.replace(_MAML_5WAY, **_FOMAML),
    "fomaml_5way_5shot": dataclasses.replace(_MAML_5WAY_5SHOT, **_FOMAML),
    "fomaml_20way_1shot": dataclasses.replace(_MAML_20WAY, **_FOMAML),
    "fomaml_20way_5shot": dataclasses.replace(_MAML_20WAY_5SHOT, **_FOMAML),
    "reptile_5way_1shot": _reptile(
        5,
        1,
        train_shots=15,
        inner_batch=25,
        inner_iters=3,
        learning_rate=1e-3,
        meta_step=1.0,
        meta_batch=10,
        meta_iters=100000,
        eval_batch=25,
        eval_iters=5,
    ),
    "reptile_5way_1shot_nontrans": _reptile(
        5,
        1,
        train_shots=12,
        inner_batch=5,
        inner_iters=12,
        learning_rate=4.4e-4,
        meta_step=1.0,
        meta_batch=3,
        meta_iters=200000,
        eval_batch=5,
        eval_iters=86,
    ),
    "reptile_5way_5shot": _reptile(
        5,
        5,
        train_shots=10,
        inner_batch=10,
        inner_iters=5,
        learning_rate=1.5e-3,
        meta_step=0.7,
        meta_batch=5,
        meta_iters=100000,
        eval_batch=6,
        eval_iters=100,
    ),
    "reptile_20way_1shot": _reptile(
        20,
        1,
        train_shots=9,
        inner_batch=15,
        inner_iters=12,
        learning_rate=4.6e-4,
        meta_step=1.0,
        meta_batch=3,
        meta_iters=200000,
        eval_batch=10,
        eval_iters=97,
    ),
    "reptile_20way_5shot": _reptile(
        20,
        5,
        train_shots=12,
        inner_batch=20,
        inner_iters=12,
        learning_rate=4.6e-4,
        meta_step=1.0,
        meta_batch=3,
        meta_iters=200000,
        eval_batch=10,
        eval_iters=97,
    ),
}
# MAML++ (HowToTrainYourMAMLPytorch, omniglot_maml++ configurations).
_MAMLPP_5WAY = dataclasses.replace(
    _MAML_5WAY,
    meta_batch_size=8,
    inner_steps=5,
    eval_inner_steps=5,
    inner_learning_rate=0.1,
    learn_inner_rates="per_layer_per_step",
    multi_step_loss_epochs=10,
    per_step_batch_norm="statistics_and_weights",
    outer_schedule="cosine",
    outer_min_learning_rate=1e-5,
    iterations=50000,
    eval_every=500,
)
PRESETS["mamlpp_5way_1shot"] = _MAMLPP_5WAY
PRESETS["mamlpp_20way_1shot"] = dataclasses.replace(_MAMLPP_5WAY, ways=20)

DEFAULT = "maml_5way_1shot"
