"""torch.distributed, isolated: setup from the environment, rank helpers, reductions. Nothing else imports
torch.distributed.

The same code runs as one plain process (no RANK/WORLD_SIZE in the environment) or under `torchrun`
(env:// rendezvous). Backend: nccl when the device is CUDA, gloo on CPU.
"""
from __future__ import annotations

import functools
import os
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from adapter4rec.errors import USER_ERRORS


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_initialized() else 1


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(requested: str) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("adapter4rec: device=cuda was requested but CUDA is not available")
    return torch.device("cuda", local_rank())


def setup(requested_device: str = "auto") -> torch.device:
    """Join the process group if launched by torchrun; return this process's device."""
    device = pick_device(requested_device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(minutes=30))
    return device


def record_errors(quiet: tuple[type, ...] = USER_ERRORS):
    """Decorator: under torchrun, an uncaught exception is also written to the error file torchrun reads, so its
    failure summary names the failing rank's exception and traceback (instead of "error_file: <N/A>"); outside
    torchrun the function runs as is (torch's `record` would also re-enable faulthandler on every call).
    Exceptions of the types `quiet` (user errors: the entry point prints their one-line message) are
    re-raised without being recorded, so torchrun does not repeat them with a traceback."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if "TORCHELASTIC_ERROR_FILE" not in os.environ:
                return fn(*args, **kwargs)
            from torch.distributed.elastic.multiprocessing.errors import record
            passed = []

            def guarded(*a, **k):
                try:
                    return fn(*a, **k)
                except quiet as err:
                    passed.append(err)
            result = record(guarded)(*args, **kwargs)
            if passed:
                raise passed[0]
            return result
        return wrapper
    return decorate


def cleanup() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place and returned); identity in a single process.

    NCCL reduces only CUDA tensors, so a CPU tensor makes a round trip through the current GPU."""
    if not torch_dist.is_initialized():
        return tensor
    if torch_dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        torch_dist.all_reduce(on_gpu, op=torch_dist.ReduceOp.SUM)
        tensor.copy_(on_gpu.cpu())
    else:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def nonfinite_ranks(value: torch.Tensor) -> int:
    """How many ranks hold a non-finite `value` (0 or 1 in a single process). Every rank gets the same count,
    so all take the same branch: a rank that skipped backward while another ran it would leave the other
    waiting in DDP's gradient all-reduce."""
    bad = (~torch.isfinite(value.detach())).any().float().reshape(1)  # on value's device: no extra copy
    return int(all_reduce_sum(bad).item())


def loss_over_ranks(loss: torch.Tensor) -> tuple[int, float]:
    """(how many ranks hold a non-finite loss, the loss of the whole global batch) in one all-reduce. Each rank's
    loss is its share of the global mean scaled by the world size (losses divide by the global position count
    over W), so the mean over the ranks is the whole batch's loss; a rank's own value is not (rank 0 holding 16 of
    39 positions logs 0.82 of it)."""
    value = loss.detach().float().reshape(1)
    bad = ~torch.isfinite(value)
    both = all_reduce_sum(torch.cat([bad.float(), torch.where(bad, torch.zeros_like(value), value)]))
    return int(both[0].item()), float(both[1].item()) / world_size()


class _GatherRows(torch.autograd.Function):
    """(m, ...) on every rank -> (W, m, ...) stacked in rank order. Backward: rank r's rows fed every rank's
    loss, so their gradient is the sum over ranks of the gradients of the gathered copy (an all-reduce, which
    gloo and nccl both have; torch's own autograd all_gather needs all-to-all or reduce-scatter)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(rows) for _ in range(world_size())]
        torch_dist.all_gather(out, rows.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        return grad[rank()]


def all_gather_rows(rows: torch.Tensor, differentiable: bool = False) -> list[torch.Tensor]:
    """[rows of rank 0, rows of rank 1, ...] for tensors whose first dimension differs between ranks (padded
    to the longest for the collective, cut back after); gradients flow back to each rank's own rows when
    `differentiable`. [rows] in a single process."""
    if not torch_dist.is_initialized():
        return [rows]
    size = torch.tensor([rows.shape[0]], device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    torch_dist.all_gather(sizes, size)
    sizes = [int(n) for n in sizes]
    padded = torch.cat([rows, rows.new_zeros(max(sizes) - rows.shape[0], *rows.shape[1:])])
    if differentiable:
        stacked = _GatherRows.apply(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        torch_dist.all_gather(parts, padded.contiguous())
        stacked = torch.stack(parts)
    return [stacked[r, :n] for r, n in enumerate(sizes)]


def all_gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] in a single process."""
    if not torch_dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's value of `obj` on every rank."""
    if not torch_dist.is_initialized():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over the model when running with several processes, else the model itself.

    Call after the trainable set is final: DDP registers gradient hooks for `requires_grad` parameters at
    construction."""
    if not torch_dist.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
