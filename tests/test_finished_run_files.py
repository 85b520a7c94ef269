"""A finished run keeps what it is used by (best.pt, results.json); last.pt and epoch copies go unless asked to
stay. An export in safetensors holds the same checkpoint and reads back like a .pt one."""
from __future__ import annotations

import pytest
import torch

from adapter4rec.checkpoint import CheckpointError, ForeignCheckpointError, read_checkpoint
from adapter4rec.config import parse_args
from adapter4rec.serving.export import export, main as export_main
from adapter4rec.training import train
from tests.conftest import tiny_args


def _run(tiny_bert, tiny_data, out, **extra):
    args = tiny_args(tiny_bert, tiny_data / "target", out, epochs=2, keep_last=2, **extra)
    return train.run(parse_args(args, stage="downstream"))


@pytest.fixture(scope="module")
def finished(tiny_bert, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    _run(tiny_bert, tiny_data, out)
    return out / "downstream-sasrec-bce-tiny-bert-all-seed12345"


def test_a_finished_run_keeps_best_and_results_only(finished):
    names = sorted(p.name for p in finished.iterdir() if p.suffix in (".pt", ".json"))
    assert names == ["best.pt", "config.json", "environment.json", "results.json"]
    assert "removed last.pt, epoch-0.pt, epoch-1.pt" in (finished / "log.txt").read_text()


def test_keep_run_state_keeps_them_and_is_no_new_setting(tiny_bert, tiny_data, tmp_path):
    results = _run(tiny_bert, tiny_data, tmp_path, keep_run_state="true")
    run_dir = tmp_path / results["run_dir"].rsplit("/", 1)[1]
    assert {"last.pt", "epoch-0.pt", "epoch-1.pt", "best.pt"} <= {p.name for p in run_dir.iterdir()}
    again = _run(tiny_bert, tiny_data, tmp_path)  # same settings but keep_run_state: reported as done
    assert again["test"] == results["test"] and (run_dir / "last.pt").is_file()


def test_a_safetensors_export_is_the_same_checkpoint(finished, capsys):
    as_pt, as_safetensors = finished / "full.pt", finished / "full.safetensors"
    export(finished, as_pt)
    export_main([str(finished), "--format", "safetensors"])
    assert "full.safetensors" in capsys.readouterr().out
    pt, st = read_checkpoint(as_pt), read_checkpoint(as_safetensors)
    assert st["kind"] == "full" and st["config"] == pt["config"] and st["metrics"] == pt["metrics"]
    assert st["model"].keys() == pt["model"].keys()
    assert all(torch.equal(st["model"][k], pt["model"][k]) for k in pt["model"])
    with pytest.raises(SystemExit, match="does not end in .safetensors"):
        export_main([str(finished), "--format", "safetensors", "--out", str(finished / "x.pt")])


def test_a_torn_or_foreign_safetensors_file_is_one_line(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(ForeignCheckpointError, match="not an adapter4rec checkpoint"):
        read_checkpoint(foreign)
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(foreign.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"cannot be read as safetensors .*truncated\?$") as err:
        read_checkpoint(torn)
    assert "\n" not in str(err.value)
