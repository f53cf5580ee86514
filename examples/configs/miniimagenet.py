"""Named miniImageNet configurations (`python -m examples.miniimagenet`).

MAML and first-order MAML follow the MAML paper (Finn et al. 2017): 5-way,
15 query examples per class, five inner steps of size 0.01 in training and
ten at test, meta-batch 4 (1-shot) or 2 (5-shot), Adam 1e-3, 60k
meta-steps, conv4 with 32 filters on 84x84 RGB images. Reptile adapts with
eight steps in training and fifty at test. Every preset uses gradient
agreement weighting; `--weighting=uniform` gives the plain algorithm.
"""

from __future__ import annotations

import dataclasses

from examples.configs import FewShotConfig

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
_REPTILE = {"algo": "reptile", "inner_steps": 8, "eval_inner_steps": 50}

PRESETS = {
    "maml_5way_1shot": _MAML_1SHOT,
    "maml_5way_5shot": _MAML_5SHOT,
    "fomaml_5way_1shot": dataclasses.replace(_MAML_1SHOT, algo="fomaml"),
    "fomaml_5way_5shot": dataclasses.replace(_MAML_5SHOT, algo="fomaml"),
    "reptile_5way_1shot": dataclasses.replace(_MAML_1SHOT, **_REPTILE),
    "reptile_5way_5shot": dataclasses.replace(_MAML_5SHOT, **_REPTILE),
}
DEFAULT = "maml_5way_1shot"
