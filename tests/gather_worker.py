"""Run by tests/test_gathered_negatives.py under torchrun (2 processes): each rank takes its half of a batch,
computes the sampled softmax loss with candidates gathered across ranks, backpropagates, and rank 0 writes
the loss and the rank-averaged gradients (what DDP would apply) to OUT.

argv: CONFIG_JSON SEQS_PT OUT_PT GATHER(0/1)"""
import json
import sys

import torch

from adapter4rec import dist
from adapter4rec.build import build_model, load_data
from adapter4rec.config import from_dict

if __name__ == "__main__":
    cfg_file, seqs_file, out_file, gather = sys.argv[1:5]
    dist.setup("cpu")
    cfg = from_dict(json.loads(open(cfg_file).read()))
    torch.manual_seed(0)
    model = build_model(cfg, load_data(cfg)).double().eval()
    model.gather_negatives = gather == "1"
    seqs, shared = torch.load(seqs_file)
    half = len(seqs) // 2
    mine = seqs[dist.rank() * half:(dist.rank() + 1) * half]
    loss = model(mine, shared[dist.rank()] if model.uses_shared_negatives() else None)
    loss.backward()
    losses = dist.all_reduce_sum(loss.detach().reshape(1).clone()) / dist.world_size()
    grads = {n: dist.all_reduce_sum(p.grad.clone()) / dist.world_size() for n, p in model.named_parameters()
             if p.grad is not None}
    if dist.is_main():
        torch.save({"loss": float(losses), "grads": grads}, out_file)
    dist.cleanup()
