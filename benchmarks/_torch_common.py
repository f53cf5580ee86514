"""The workloads in PyTorch, shared by the peers (torch.func, learn2learn).

The networks of `benchmarks/workloads.py` as `torch.nn` modules, their
losses and their random inputs (the same numbers as keras_ga's side,
channels first), and the FLOP count of a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import workloads


def conv4(problem: workloads.Problem) -> nn.Module:
    """keras_ga.conv4: 4 x (conv 3x3, BatchNorm, ReLU, max-pool 2), dense.

    BatchNorm uses batch statistics (`track_running_stats=False`, as in
    learn2learn's Omniglot CNN); pooling rounds up, as keras_ga's "same"
    pooling does (28 -> 14 -> 7 -> 4 -> 2).
    """
    height, _, channels = problem.input_shape
    layers, size = [], height
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, problem.width, 3, padding=1),
            nn.BatchNorm2d(problem.width, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        channels, size = problem.width, -(-size // 2)
    features = size * size * problem.width
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Linear(features, problem.outputs)
    )


def mlp(problem: workloads.Problem) -> nn.Module:
    """keras_ga.mlp: `MLP_DEPTH` ReLU layers of `width`, linear output."""
    layers, width = [], problem.input_shape[0]
    for _ in range(workloads.MLP_DEPTH):
        layers += [nn.Linear(width, problem.width), nn.ReLU()]
        width = problem.width
    return nn.Sequential(*layers, nn.Linear(width, problem.outputs))


def make(workload: workloads.Workload, device: str = "cpu"):
    """`(model, loss_fn, (support_x, support_y, query_x, query_y))` on
    `device` (a torch device name: `"cpu"`, `"cuda"`)."""
    problem = workload.problem
    torch.manual_seed(0)
    model = conv4(problem) if problem.network == "conv4" else mlp(problem)
    model = model.to(device)
    loss_fn = F.cross_entropy if problem.classification else F.mse_loss
    data = []
    for key, array in workloads.episode(workload).items():
        tensor = torch.from_numpy(array)
        if key.endswith("_x") and tensor.dim() == 5:  # NHWC -> NCHW
            tensor = tensor.permute(0, 1, 4, 2, 3).contiguous()
        elif problem.classification and key.endswith("_y"):
            tensor = tensor.long()
        data.append(tensor.to(device))
    return model, loss_fn, tuple(data)


def count_flops(step, data) -> int:
    """Matmul and convolution FLOPs of one `step(data)`."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(data)
    return counter.get_total_flops()
