"""Named miniImageNet configurations (`python -m examples.miniimagenet`).

MAML and first-order MAML follow the MAML paper (Finn et al. 2017): 5-way,
15 query examples per class, five inner steps of size 0.01 in training and
ten at test, meta-batch 4 (1-shot) or 2 (5-shot), Adam 1e-3, 60k
meta-steps, conv4 with 32 filters on 84x84 RGB images.

Reptile follows the reference implementation's commands (openai/
supervised-reptile; see `examples/configs/omniglot.py` for what they
share): `reptile_5way_1shot` is its transductive 1-shot command,
`reptile_5way_1shot_nontrans` and `reptile_5way_5shot` its
non-transductive ones. The reference's network pools before BatchNorm
(conv, max-pool, BatchNorm, ReLU); conv4 normalises before pooling.

Every preset uses gradient agreement weighting; `--weighting=uniform`
gives the plain algorithm.
"""

from __future__ import annotations

import dataclasses

from examples.configs import FewShotConfig
from examples.configs import reptile_command

_MAML_1SHOT = FewShotConfig(
    dataset="miniimagenet",
    ways=5,
    shots=1,
    queries=15,
    eval_queries=15,
    algo="maml",
    meta_batch_size=4,
    inner_steps=5,
    eval_inner_steps=10,
    inner_learning_rate=0.01,
    eval_batch_size=10,
    filters=32,
    image_size=84,
)
_MAML_5SHOT = dataclasses.replace(_MAML_1SHOT, shots=5, meta_batch_size=2)
PRESETS = {
    "maml_5way_1shot": _MAML_1SHOT,
    "maml_5way_5shot": _MAML_5SHOT,
    "fomaml_5way_1shot": dataclasses.replace(_MAML_1SHOT, algo="fomaml"),
    "fomaml_5way_5shot": dataclasses.replace(_MAML_5SHOT, algo="fomaml"),
    "reptile_5way_1shot": reptile_command(
        _MAML_1SHOT,
        ways=5,
        shots=1,
        train_shots=15,
        inner_batch=5,
        inner_iters=15,
        learning_rate=1e-3,
        meta_step=1.0,
        meta_batch=10,
        meta_iters=100000,
        eval_batch=5,
        eval_iters=10,
    ),
    "reptile_5way_1shot_nontrans": reptile_command(
        _MAML_1SHOT,
        ways=5,
        shots=1,
        train_shots=12,
        inner_batch=3,
        inner_iters=19,
        learning_rate=1.2e-3,
        meta_step=0.235,
        meta_batch=2,
        meta_iters=200000,
        eval_batch=3,
        eval_iters=55,
    ),
    "reptile_5way_5shot": reptile_command(
        _MAML_5SHOT,
        ways=5,
        shots=5,
        train_shots=15,
        inner_batch=10,
        inner_iters=8,
        learning_rate=2.2e-4,
        meta_step=1.0,
        meta_batch=5,
        meta_iters=200000,
        eval_batch=15,
        eval_iters=88,
    ),
}
DEFAULT = "maml_5way_1shot"
