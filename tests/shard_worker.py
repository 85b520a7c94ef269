"""Run by tests/test_shards.py under torchrun (2 processes): one epoch of real DDP training steps over the
loader train.make_loader builds; each rank writes the window indices it trained on and a digest of its weights
(before and after) to OUT_DIR/rank<r>.json.

argv: CONFIG_JSON OUT_DIR"""
import json
import sys
from pathlib import Path

import torch

from adapter4rec import dist
from adapter4rec.config import from_dict
from adapter4rec.states.layers import weights_digest
from adapter4rec.training.assemble import build_run
from adapter4rec.training.optim import build_optimizer
from adapter4rec.training.train import make_loader, train_step

if __name__ == "__main__":
    cfg_file, out_dir = sys.argv[1:3]
    device = dist.setup("cpu")
    cfg = from_dict(json.loads(Path(cfg_file).read_text()))
    data, model = build_run(cfg, device)
    ddp_model = dist.wrap_ddp(model, device)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = weights_digest([model])
    loader, _ = make_loader(data.split.train, cfg)
    negatives = torch.Generator().manual_seed(cfg.seed + dist.rank())
    trained = []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        for indices in loader.batch_sampler:
            seqs = data.split.train[indices]
            loss, fault = train_step(model, ddp_model, seqs, model.draw_negatives(seqs, negatives), optimizer,
                                     scaler, cfg, device)
            assert fault is None
            trained.append([epoch, indices])
    (Path(out_dir) / f"rank{dist.rank()}.json").write_text(json.dumps(
        {"before": before, "after": weights_digest([model]), "trained": trained, "steps": len(loader)}))
    dist.cleanup()
