"""learn2learn 0.2.0's meta-training step, as its examples write it.

MAML and first-order MAML use `learn2learn.algorithms.MAML` as its
examples do (`clone()`, `adapt()`, one `backward()` per task into the
meta-parameters' `.grad`). learn2learn has no Reptile class; its Reptile
example adapts a copy with SGD and sets `.grad` to theta - theta_i, which is
what `step_fn` does with `MAML(first_order=True)` clones.

learn2learn's package `__init__` imports torchvision and gym, which
`benchmarks/setup_peers.sh` does not install; `load_maml_class` loads
`learn2learn.utils` and `learn2learn.algorithms.maml` under stub parent
packages instead, so the package `__init__` never runs.

`benchmarks/peer_step.py --impl=l2l` times it; the networks and inputs
come from `benchmarks/_torch_common.py`.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

import torch

from benchmarks import workloads


def _stub_package(name, path):
    module = types.ModuleType(name)
    module.__path__ = [path]
    module.__spec__ = importlib.machinery.ModuleSpec(
        name, None, is_package=True
    )
    module.__spec__.submodule_search_locations = [path]
    sys.modules[name] = module
    return module


def load_maml_class():
    """learn2learn's MAML class, without the package `__init__`."""
    if "learn2learn" not in sys.modules:
        spec = importlib.util.find_spec("learn2learn")
        if spec is None:
            raise ImportError(
                "learn2learn is not installed; run benchmarks/setup_peers.sh"
            )
        root = spec.submodule_search_locations[0]
        package = _stub_package("learn2learn", root)
        package.algorithms = _stub_package(
            "learn2learn.algorithms", os.path.join(root, "algorithms")
        )
        importlib.import_module("learn2learn.utils")
    return importlib.import_module("learn2learn.algorithms.maml").MAML


def step_fn(model, loss_fn, workload: workloads.Workload):
    """One learn2learn meta-step `step(data)` (Adam outer optimizer)."""
    algo, steps = workload.algo, workload.inner_steps
    maml = load_maml_class()(
        model,
        lr=workload.problem.inner_learning_rate,
        first_order=algo != "maml",
    )
    opt = torch.optim.Adam(maml.parameters(), lr=workloads.OUTER_LEARNING_RATE)

    def step(data):
        opt.zero_grad()
        n = data[0].shape[0]
        for i in range(n):
            sx, sy, qx, qy = (d[i] for d in data)
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(loss_fn(learner(sx), sy))
            if algo == "reptile":
                with torch.no_grad():  # logged by l2l's Reptile example
                    loss_fn(learner(qx), qy)
                for p, q in zip(maml.parameters(), learner.parameters()):
                    update = (p - q).detach() / n
                    p.grad = update if p.grad is None else p.grad + update
            else:
                (loss_fn(learner(qx), qy) / n).backward()
        opt.step()

    return step
