"""Run by tests/test_gathered_negatives.py under torchrun (2 processes): rank 0 takes the first SPLIT windows of
a batch and rank 1 the rest, so the ranks hold different numbers of loss positions. For every loss in VARIANTS
each rank computes its loss and backpropagates, and rank 0 writes each variant's rank-averaged loss and
gradients (what DDP would apply) to OUT as {name: {"loss": float, "grads": {param: tensor}}}, and under
"train_step" what one training step logs (the softmax, through DDP) beside rank 0's own share of the loss.

argv: CONFIG_JSON BATCH_PT OUT_PT, BATCH_PT holding (seqs (B, L+1), SPLIT, shared negatives (2, S), bce
negatives (B, L))."""
import json
import sys

import torch

from adapter4rec import dist
from adapter4rec.config import from_dict
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import train_step

VARIANTS = {  # name -> (loss, softmax_negatives, gather_negatives)
    "bce": ("bce", 0, True),
    "inbatch": ("inbatch", 0, True),
    "inbatch-own-candidates": ("inbatch", 0, False),  # the control: each rank ranks against its own windows only
    "softmax": ("softmax", 0, True),
    "softmax-sampled": ("softmax", 5, True),
}


def negatives_of(model, rows: slice, shared: torch.Tensor, bce: torch.Tensor) -> torch.Tensor | None:
    """The negatives of the windows `rows`: one per position (bce), the shared draws (a sampled softmax: shared
    is (S,) here), else None."""
    if model.loss_name == "bce":
        return bce[rows]
    return shared if model.uses_shared_negatives() else None


if __name__ == "__main__":
    cfg_file, batch_file, out_file = sys.argv[1:4]
    dist.setup("cpu")
    cfg = from_dict(json.loads(open(cfg_file).read()))
    torch.manual_seed(0)
    model = build_model(cfg, load_data(cfg)).double().eval()
    seqs, split, shared, bce = torch.load(batch_file)
    mine = slice(0, split) if dist.rank() == 0 else slice(split, len(seqs))
    outputs = {}
    for name, (loss_name, negatives, gather) in VARIANTS.items():
        model.loss_name, model.softmax_negatives, model.gather_negatives = loss_name, negatives, gather
        model.zero_grad(set_to_none=True)
        loss = model(seqs[mine], negatives_of(model, mine, shared[dist.rank()], bce))
        loss.backward()
        losses = dist.all_reduce_sum(loss.detach().reshape(1).clone()) / dist.world_size()
        grads = {n: dist.all_reduce_sum(p.grad.clone()) / dist.world_size() for n, p in model.named_parameters()
                 if p.grad is not None}
        outputs[name] = {"loss": float(losses), "grads": grads}
    # what training logs: train_step's loss under DDP is the whole batch's, not this rank's share (the softmax)
    model.loss_name, model.softmax_negatives, model.gather_negatives = VARIANTS["softmax"]
    ddp = dist.wrap_ddp(model, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    logged, fault = train_step(model, ddp, seqs[mine], None, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                               cfg, torch.device("cpu"))
    outputs["train_step"] = {"logged": logged, "fault": fault, "own": float(model(seqs[mine], None))}
    if dist.is_main():
        torch.save(outputs, out_file)
    dist.cleanup()
