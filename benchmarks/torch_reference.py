"""PyTorch peers of benchmarks/speed.py: torch.func and learn2learn.

Runs one meta-training configuration and prints one JSON line with the
step times. Two torch.func formulations of the same algorithms as
`keras_ga.MetaModel` (uniform weighting, Adam outer optimizer):

- `func_vmap`: `torch.func.functional_call` + `grad` + `vmap` over tasks;
- `func_loop`: the same per-task function in a Python loop over tasks;

and `l2l`, learn2learn 0.2.0's `MAML` class (see l2l_reference.py). Needs
torch (and learn2learn) from benchmarks/setup_peers.sh; speed.py starts it
in that venv, one process per configuration:

    /tmp/peers/bin/python benchmarks/torch_reference.py --impl=func_vmap \
        --workload=omniglot --algo=maml --steps=1 --meta_batch=32

Random inputs of the workload's shapes; BatchNorm uses batch statistics
(`track_running_stats=False`, as in learn2learn's Omniglot CNN). With
`--flops`, also counts the matmul and convolution FLOPs of one meta-step
(`torch.utils.flop_counter`), the figure speed.py divides by step time.
"""

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.func import grad
from torch.func import vmap

WAYS, SHOTS, QUERIES = 5, 1, 15  # Omniglot 5-way 1-shot, 15 queries/class
SINE_SHOTS = 10  # support and query examples per sine task
INNER_LR = {"omniglot": 0.4, "sine": 0.01}


def conv4(ways=WAYS, filters=64):
    """keras_ga.models.conv4: 4 x (conv 3x3, BatchNorm, ReLU, max-pool 2)."""
    layers, channels = [], 1
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, filters, 3, padding=1),
            nn.BatchNorm2d(filters, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        channels = filters
    # 28 -> 14 -> 7 -> 4 -> 2, as keras_ga.models.conv4 ("same" pooling).
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * filters, ways))


def sine_mlp():
    return nn.Sequential(
        nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
        nn.Linear(64, 1),
    )  # fmt: skip


def make_workload(name, meta_batch, seed=0):
    """(model, loss_fn, episode tensors) of a workload, random inputs."""
    gen = torch.Generator().manual_seed(seed)
    if name == "omniglot":
        s, q = WAYS * SHOTS, WAYS * QUERIES
        data = (
            torch.rand(meta_batch, s, 1, 28, 28, generator=gen),
            torch.randint(0, WAYS, (meta_batch, s), generator=gen),
            torch.rand(meta_batch, q, 1, 28, 28, generator=gen),
            torch.randint(0, WAYS, (meta_batch, q), generator=gen),
        )
        return conv4(), F.cross_entropy, data
    if name == "sine":
        data = tuple(
            torch.rand(meta_batch, SINE_SHOTS, 1, generator=gen)
            for _ in range(4)
        )
        return sine_mlp(), F.mse_loss, data
    raise ValueError(f"`workload` must be 'omniglot' or 'sine': {name!r}")


def func_task_grad(model, loss_fn, algo, steps, lr):
    """Per-task outer gradient as a pure function of (params, task)."""

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


def func_step_fn(impl, model, loss_fn, algo, steps, lr):
    """One meta-step: mean of the task gradients into Adam."""
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    task_grad = func_task_grad(model, loss_fn, algo, steps, lr)
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


def time_steps(step, data, repeats, warmup, budget_s=60.0):
    """(first step seconds, list of later step seconds).

    When the first step took longer than `budget_s`, the warm-up is skipped
    and one step is timed, to keep slow peers within the run's time.
    """
    start = time.perf_counter()
    step(data)
    first = time.perf_counter() - start
    if first > budget_s:
        warmup, repeats = 0, 1
    for _ in range(warmup):
        step(data)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(data)
        times.append(time.perf_counter() - start)
    return first, times


def count_flops(step, data):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(data)
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default="func_vmap")
    parser.add_argument("--workload", default="omniglot")
    parser.add_argument("--algo", default="maml")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--meta_batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget_s", type=float, default=60.0)
    parser.add_argument("--flops", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, loss_fn, data = make_workload(args.workload, args.meta_batch)
    lr = INNER_LR[args.workload]
    if args.impl == "l2l":
        import l2l_reference

        step = l2l_reference.step_fn(model, loss_fn, args.algo, args.steps, lr)
    else:
        step = func_step_fn(
            args.impl, model, loss_fn, args.algo, args.steps, lr
        )
    first, times = time_steps(
        step, data, args.repeats, args.warmup, args.budget_s
    )
    result = {
        "impl": args.impl,
        "first_s": first,
        "times_s": times,
        "rss_base_mb": rss0 / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "torch": torch.__version__,
    }
    if args.flops:
        result["flops"] = count_flops(step, data)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
