"""Times a PyTorch peer's meta-training step for one workload.

The worker that `benchmarks/step_speed.py` starts once per configuration,
in the peers' environment (`benchmarks/setup_peers.sh`). `--impl` picks
learn2learn (`l2l`, `benchmarks/l2l_reference.py`) or a torch.func
reference (`func_vmap`, `func_loop`, `benchmarks/torch_reference.py`); the
workload comes from `benchmarks/workloads.py`. It times the first step,
`--warmup` more and `--repeats` timed ones (one timed step, no warm-up,
when the first took longer than `--budget_s`) and prints one JSON line:
step times, peak RSS, torch's version and, with `--flops`, the matmul and
convolution FLOPs of one step. `--device=cuda` runs it on a GPU. Command,
from the repository root:

    .venv-peers/bin/python -m benchmarks.peer_step --impl=l2l \
        --workload=omniglot_maml1 --repeats=3
"""

from absl import app
from absl import flags

from benchmarks import _timing

_timing.define_worker_flags()
_IMPL = flags.DEFINE_enum(
    "impl",
    "l2l",
    ["l2l", "func_vmap", "func_loop"],
    "learn2learn's MAML class, or torch.func with vmap or a loop over tasks.",
)
_FLOPS = flags.DEFINE_bool("flops", False, "Also count one step's FLOPs.")
_DEVICE = flags.DEFINE_string(
    "device", "cpu", "torch device of the step: cpu or cuda."
)
_BUDGET_S = flags.DEFINE_float(
    "budget_s", 60.0, "Time one step only when the first took longer."
)


def main(argv):
    del argv
    workload = _timing.workload_from_flags()
    import torch

    from benchmarks import _torch_common

    threads = flags.FLAGS.threads
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    rss_base = _timing.peak_rss_mb()
    model, loss_fn, data = _torch_common.make(workload, _DEVICE.value)
    if _IMPL.value == "l2l":
        from benchmarks import l2l_reference

        step = l2l_reference.step_fn(model, loss_fn, workload)
    else:
        from benchmarks import torch_reference

        step = torch_reference.step_fn(_IMPL.value, model, loss_fn, workload)

    def timed():
        step(data)
        if _DEVICE.value.startswith("cuda"):
            torch.cuda.synchronize()  # CUDA kernels run asynchronously

    first, times = _timing.time_steps(
        timed,
        flags.FLAGS.repeats,
        flags.FLAGS.warmup,
        _BUDGET_S.value,
    )
    result = {
        "impl": _IMPL.value,
        **workload.describe(),
        "first_s": first,
        "times_s": times,
        "rss_base_mb": rss_base,
        "rss_peak_mb": _timing.peak_rss_mb(),
        "torch": torch.__version__,
        "device": _DEVICE.value,
    }
    if _DEVICE.value.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name()
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if _FLOPS.value:
        result["flops"] = _torch_common.count_flops(step, data)
    _timing.emit(result)


if __name__ == "__main__":
    app.run(main)
