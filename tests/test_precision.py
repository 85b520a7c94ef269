"""precision=auto: bf16 where the device computes it in hardware, fp32 where bf16 would be emulated (on an
AVX2-only CPU a bf16 matmul took 15x fp32's time, which made a 600-user epoch take minutes). The concrete choice
is what config.json records, so serving ranks in the precision the run was evaluated in."""
import contextlib
import json

import pytest
import torch

from adapter4rec import evaluate
from adapter4rec.config import parse_args
from adapter4rec.training import train
from conftest import tiny_args


@pytest.mark.parametrize("hardware, chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_picks_by_the_hardware(monkeypatch, tiny_bert, tiny_data, tmp_path, hardware, chosen):
    monkeypatch.setattr(evaluate, "native_bf16", lambda device: hardware)
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, precision="auto"))
    resolved, note = evaluate.resolve_precision(cfg, torch.device("cpu"))
    assert resolved.precision == chosen and f"precision=auto: {chosen}" in note
    context = evaluate.autocast(cfg, torch.device("cpu"))
    assert isinstance(context, contextlib.nullcontext) == (chosen == "fp32")


def test_explicit_bf16_is_kept_and_flagged_where_emulated(monkeypatch, tiny_bert, tiny_data, tmp_path):
    monkeypatch.setattr(evaluate, "native_bf16", lambda device: False)
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, precision="bf16"))
    resolved, note = evaluate.resolve_precision(cfg, torch.device("cpu"))
    assert resolved.precision == "bf16" and "without bf16 in hardware" in note
    monkeypatch.setattr(evaluate, "native_bf16", lambda device: True)
    assert evaluate.resolve_precision(cfg, torch.device("cpu")) == (cfg, None)


def test_a_run_records_the_concrete_precision(monkeypatch, tiny_bert, tiny_data, tmp_path):
    monkeypatch.setattr(evaluate, "native_bf16", lambda device: False)
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, precision="auto", run_name="auto"),
                     stage="downstream")
    train.run(cfg)
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["precision"] == "fp32"
    # a second call with the same request finds the run done: the request resolves to what was recorded
    assert train.run(cfg)["test"] == json.loads((tmp_path / "auto" / "results.json").read_text())["test"]
