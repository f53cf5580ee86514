"""Named Omniglot configurations (`python -m examples.omniglot --preset=`).

MAML and first-order MAML follow the MAML paper (Finn et al. 2017): 5-way,
one inner step of size 0.4 in training and three at test, meta-batch 32;
20-way, five steps of size 0.1 in training and at test, meta-batch 16;
Adam 1e-3, 60k meta-steps. Reptile adapts with five steps over the whole
support set in training and ten at test, with MAML's meta-batch and step
size. Every preset uses gradient agreement weighting; `--weighting=uniform`
gives the plain algorithm. The full budget takes hours on a CPU; a smaller
`--iterations` gives a quick run.
"""

from __future__ import annotations

import dataclasses

from examples.configs import FewShotConfig

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
_REPTILE = {"algo": "reptile", "inner_steps": 5, "eval_inner_steps": 10}

PRESETS = {
    "maml_5way_1shot": _MAML_5WAY,
    "maml_5way_5shot": _MAML_5WAY_5SHOT,
    "maml_20way_1shot": _MAML_20WAY,
    "maml_20way_5shot": _MAML_20WAY_5SHOT,
    "fomaml_5way_1shot": dataclasses.replace(_MAML_5WAY, **_FOMAML),
    "fomaml_5way_5shot": dataclasses.replace(_MAML_5WAY_5SHOT, **_FOMAML),
    "fomaml_20way_1shot": dataclasses.replace(_MAML_20WAY, **_FOMAML),
    "fomaml_20way_5shot": dataclasses.replace(_MAML_20WAY_5SHOT, **_FOMAML),
    "reptile_5way_1shot": dataclasses.replace(_MAML_5WAY, **_REPTILE),
    "reptile_5way_5shot": dataclasses.replace(_MAML_5WAY_5SHOT, **_REPTILE),
    "reptile_20way_1shot": dataclasses.replace(_MAML_20WAY, **_REPTILE),
    "reptile_20way_5shot": dataclasses.replace(_MAML_20WAY_5SHOT, **_REPTILE),
}
DEFAULT = "maml_5way_1shot"
