"""learn2learn 0.2.0 peer of benchmarks/speed.py (used by torch_reference.py).

MAML and first-order MAML use `learn2learn.algorithms.MAML` as its
examples do (`clone()`, `adapt()`, one `backward()` per task into the
meta-parameters' `.grad`). learn2learn has no Reptile class; its Reptile
example adapts a copy with SGD and sets `.grad` to theta - theta_i, which is
what `step_fn` does with `MAML(first_order=True)` clones.

learn2learn's package `__init__` imports torchvision (absent beside torch
2.13.0) and gym; `load_maml_class` loads `learn2learn.utils` and
`learn2learn.algorithms.maml` under stub parent packages instead, so the
package `__init__` never runs.

    /tmp/peers/bin/python benchmarks/l2l_reference.py --check
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

import torch


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


def step_fn(model, loss_fn, algo, steps, lr):
    """One learn2learn meta-step over a meta-batch (Adam outer optimizer)."""
    maml_cls = load_maml_class()
    maml = maml_cls(model, lr=lr, first_order=algo != "maml")
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)

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


def _check():
    import torch_reference

    print("learn2learn MAML:", load_maml_class())
    for algo in ("maml", "fomaml", "reptile"):
        model, loss_fn, data = torch_reference.make_workload("sine", 4)
        step_fn(model, loss_fn, algo, 2, 0.01)(data)
    print("learn2learn steps ran: maml, fomaml, reptile")


if __name__ == "__main__":
    if "--check" in sys.argv:
        _check()
