"""torch.func references of keras_ga's meta-training step.

The same algorithms as `keras_ga.MetaModel` (MAML, first-order MAML,
Reptile; uniform weighting, Adam outer optimizer) written with
`torch.func`, in two formulations:

- `func_vmap`: `functional_call` + `grad` + `vmap` over tasks;
- `func_loop`: the same per-task function in a Python loop over tasks.

`benchmarks/peer_step.py` times them; the networks and inputs come from
`benchmarks/_torch_common.py`.
"""

import torch
from torch.func import functional_call
from torch.func import grad
from torch.func import vmap

from benchmarks import workloads

IMPLS = ("func_vmap", "func_loop")


def task_grad_fn(model, loss_fn, algo, steps, lr):
    """The per-task outer gradient as a pure function of (params, task)."""

    def loss(params, x, y):
        return loss_fn(functional_call(model, params, (x,)), y)

    # First order needs no detach: no outer grad transform wraps `adapt`
    # in fomaml and reptile.
    def adapt(params, sx, sy):
        for _ in range(steps):
            g = grad(loss)(params, sx, sy)
            params = {k: p - lr * g[k] for k, p in params.items()}
        return params

    def maml(params, sx, sy, qx, qy):
        return grad(lambda p: loss(adapt(p, sx, sy), qx, qy))(params)

    def fomaml(params, sx, sy, qx, qy):
        phi = adapt(params, sx, sy)
        return grad(loss)(phi, qx, qy)

    def reptile(params, sx, sy, qx, qy):
        phi = adapt(params, sx, sy)
        updates = {k: params[k] - phi[k] for k in params}
        # The query loss after adaptation, which keras_ga reports too (and
        # learn2learn's Reptile example logs).
        updates["_query_loss"] = loss(phi, qx, qy).detach()
        return updates

    return {"maml": maml, "fomaml": fomaml, "reptile": reptile}[algo]


def step_fn(impl, model, loss_fn, workload: workloads.Workload):
    """One meta-step `step(data)`: the mean task gradient into Adam."""
    if impl not in IMPLS:
        raise ValueError(
            f"`impl` must be one of {list(IMPLS)}. Received: impl={impl!r}"
        )
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=workloads.OUTER_LEARNING_RATE)
    task_grad = task_grad_fn(
        model,
        loss_fn,
        workload.algo,
        workload.inner_steps,
        workload.problem.inner_learning_rate,
    )
    batched = vmap(task_grad, in_dims=(None, 0, 0, 0, 0))

    def step(data):
        detached = {k: p.detach() for k, p in params.items()}
        if impl == "func_vmap":
            grads = {k: g.mean(0) for k, g in batched(detached, *data).items()}
            grads.pop("_query_loss", None)
        else:
            grads = {k: torch.zeros_like(p) for k, p in detached.items()}
            n = data[0].shape[0]
            for i in range(n):
                task = [d[i] for d in data]
                for k, g in task_grad(detached, *task).items():
                    if k in grads:
                        grads[k] += g / n
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()

    return step
