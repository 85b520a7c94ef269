"""Run by tests/test_gathered_negatives.py under torchrun (2 processes): each rank takes its half of a batch,
computes the loss once with candidates gathered across ranks and once with its own half's only (the control),
backpropagates, and rank 0 writes each loss and its rank-averaged gradients (what DDP would apply) to OUT as
{"1": gathered, "0": not gathered}.

argv: CONFIG_JSON SEQS_PT OUT_PT"""
import json
import sys

import torch

from adapter4rec import dist
from adapter4rec.build import build_model, load_data
from adapter4rec.config import from_dict

if __name__ == "__main__":
    cfg_file, seqs_file, out_file = sys.argv[1:4]
    dist.setup("cpu")
    cfg = from_dict(json.loads(open(cfg_file).read()))
    torch.manual_seed(0)
    model = build_model(cfg, load_data(cfg)).double().eval()
    seqs, shared = torch.load(seqs_file)
    half = len(seqs) // 2
    mine = seqs[dist.rank() * half:(dist.rank() + 1) * half]
    outputs = {}
    for gather in ("1", "0"):
        model.gather_negatives = gather == "1"
        model.zero_grad(set_to_none=True)
        loss = model(mine, shared[dist.rank()] if model.uses_shared_negatives() else None)
        loss.backward()
        losses = dist.all_reduce_sum(loss.detach().reshape(1).clone()) / dist.world_size()
        grads = {n: dist.all_reduce_sum(p.grad.clone()) / dist.world_size() for n, p in model.named_parameters()
                 if p.grad is not None}
        outputs[gather] = {"loss": float(losses), "grads": grads}
    if dist.is_main():
        torch.save(outputs, out_file)
    dist.cleanup()
