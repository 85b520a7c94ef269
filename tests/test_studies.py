"""Study scripts are wired to the launchers: --dry_run prints every run they would start, with their arguments."""
from __future__ import annotations

import subprocess
import sys

import pytest

from adapter4rec.config import REPO_ROOT


def dry_run(script: str, *args: str) -> list[str]:
    """The commands a study would start; a finished Amazon source run in this checkout's runs/ is reused instead,
    and its `= ... reused` line stands in for its command (as --run_name=..., so the checks read alike)."""
    out = subprocess.run([sys.executable, str(REPO_ROOT / script), "--dry_run", *args], capture_output=True,
                         text=True, check=True, cwd=REPO_ROOT).stdout
    reused = [f"= Pretraining/Text/run.py --run_name={line.split()[1].rstrip(':')} --seed=12345"
              for line in out.splitlines()
              if line.startswith("= amazon-office-sasrec") and ": finished (results.json), reused" in line]
    return reused + [line for line in out.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("tree", ["Text", "CV"])
def test_placement_study_covers_every_variant(tree):
    commands = dry_run(f"Downstream/{tree}/script/study_placement.py", "--seeds", "1,2")
    assert len(commands) == 9 * 2
    joined = "\n".join(commands)
    for variant in ("--adapter_where=item", "--adapter_where=user", "--adapter_sublayers=attention",
                    "--adapter_sublayers=ffn", "--adapter=parallel", "--adapter_layers=2", "--tune_layernorm=true"):
        assert variant in joined, variant
    assert "placement-item-only-seed2" in joined and "--seed=2" in joined


def test_source_scaling_pretrains_each_fraction_and_transfers_from_it():
    commands = dry_run("Pretraining/CV/script/study_source_scaling.py")
    pretrain = [c for c in commands if "Pretraining/CV/run.py" in c]
    assert [c.split("--user_fraction=")[1].split()[0] for c in pretrain] == ["0.1", "0.25", "0.5", "1.0"]
    transfers = [c for c in commands if "Downstream/CV/run.py" in c]
    assert len(transfers) == 8 and "--source_checkpoint=runs/cv-source-scaling-f0.1-seed12345/best.pt" in transfers[0]
    assert all("--user_fraction" not in c for c in transfers)  # the whole target


def test_target_scaling_scales_only_the_target():
    commands = dry_run("Downstream/Text/script/study_target_scaling.py")
    assert len(commands) == 4 * 3 and all("Downstream/Text/run.py" in c for c in commands)
    assert sum("--source_checkpoint= " in c + " " for c in commands) == 4  # from scratch at every fraction


def test_amazon_study_runs_its_source_once_and_a_chosen_subset():
    commands = dry_run("Downstream/Text/script/study_amazon.py", "--only=amazon-sci-houlsby,amazon-sci-id-sasrec")
    assert len(commands) == 3 and "Pretraining/Text/run.py" in commands[0]
    assert "--run_name=amazon-office-sasrec" in commands[0]
    houlsby, ids = commands[1:]
    assert "--adapter=houlsby" in houlsby and "--source_checkpoint=runs/amazon-office-sasrec/best.pt" in houlsby
    assert "--item_tower=id" in ids and "--loss=softmax" in ids and "--train_windows=all" in ids
    assert len(dry_run("Downstream/Text/script/study_amazon.py", "--only=amazon-sci-id-sasrec")) == 1  # no source
    everything = dry_run("Downstream/Text/script/study_amazon.py")
    assert len(everything) == 27 and sum("--source_checkpoint=runs/" in c for c in everything) == 15
    wide_source = [c for c in everything if "--run_name=amazon-office-sasrec-d128" in c.split()]
    assert len(wide_source) == 1 and "Pretraining/Text/run.py" in wide_source[0]
    assert "--embedding_dim=128" in wide_source[0] or wide_source[0].startswith("= ")  # (or reused, finished here)
    zero = [c for c in everything if "--zero_shot=true" in c]
    assert len(zero) == 1 and "--source_checkpoint=runs/amazon-office-sasrec/best.pt" in zero[0]
    assert sum("--cold_items=0.1" in c for c in everything) == 4 and sum("--item_tower=fused" in c for c in everything) == 8
    # LP-FT: every row whose backbone trains starts from the frozen-features row with its source and token budget
    warm = {c.split("--run_name=")[1].split()[0]: c.split("--warm_start=")[1].split()[0]
            for c in everything if "--warm_start=runs/" in c}
    assert warm == {"amazon-sci-scratch": "runs/amazon-sci-frozen-scratch-32tok/best.pt",
                    **{f"amazon-sci-{m}": "runs/amazon-sci-frozen-transfer-32tok/best.pt"
                       for m in ("finetune", "houlsby", "lora")},
                    # the two-stage fused rows: each from its text row (a seed's own under --seeds)
                    "amazon-sci-fused-two-stage": "runs/amazon-sci-side-head-user/best.pt",
                    "amazon-sci-fused-two-stage-scratch": "runs/amazon-sci-side-head-user-scratch/best.pt",
                    "amazon-sci-cold-fused-two-stage": "runs/amazon-sci-cold-side-head-user/best.pt",
                    "amazon-sci-fused-two-stage-d128": "runs/amazon-sci-side-head-user-d128/best.pt",
                    "amazon-sci-fused-two-stage-scratch-d128": "runs/amazon-sci-side-head-user-scratch-d128/best.pt"}
    order = [c.split("--run_name=")[1].split()[0] for c in everything]
    assert order.index("amazon-sci-frozen-scratch-32tok") < order.index("amazon-sci-scratch")
    assert order.index("amazon-sci-frozen-transfer-32tok") < order.index("amazon-sci-finetune")
    assert order.index("amazon-sci-side-head-user") < order.index("amazon-sci-fused-two-stage")
    # side, side + head + user (and its scratch), fused x 3 and two-stage x 3, cold, the four wide rows
    assert sum("--adapter=side" in c for c in everything) == 14
    assert order.index("amazon-office-sasrec-d128") < order.index("amazon-sci-side-head-user-d128")


def test_amazon_study_seeds_repeat_the_target_runs_from_the_one_source():
    commands = dry_run("Downstream/Text/script/study_amazon.py", "--only=amazon-sci-side-head-user", "--seeds", "1,2")
    assert len(commands) == 3 and "--run_name=amazon-office-sasrec" in commands[0] and "--seed=12345" in commands[0]
    assert [c.split("--run_name=")[1].split()[0] for c in commands[1:]] == [
        "amazon-sci-side-head-user-seed1", "amazon-sci-side-head-user-seed2"]
    assert all("--source_checkpoint=runs/amazon-office-sasrec/best.pt" in c for c in commands[1:])
    with pytest.raises(subprocess.CalledProcessError) as failed:
        dry_run("Downstream/Text/script/study_amazon.py", "--only=amazon-sci-side-head-user", "--seeds", "12345,1")
    assert "seed 12345" in failed.value.stderr


def test_report_pools_a_base_run_with_its_later_seeds(tmp_path, monkeypatch, capsys):
    """...and leaves out (naming them) the folders without results.json: a concurrent study's seed still running
    made the closing report fail before."""
    from adapter4rec.experiments import studies
    monkeypatch.setattr(studies, "RUNS_DIR", tmp_path)
    for name in ("row", "row-seed1", "row-seed2", "alone", "seeded-seed1", "row-seed3"):
        (tmp_path / name).mkdir()
        if name != "row-seed3":
            (tmp_path / name / "results.json").write_text("{}")
    assert studies.run_dirs(["row", "alone", "seeded", "missing"]) == [
        tmp_path / n for n in ("row", "row-seed1", "row-seed2", "alone", "seeded-seed1")]
    assert "2 run folder(s) without results.json left out (unfinished or still running): row-seed3, missing" in \
        capsys.readouterr().out


def test_amazon_settings_study_varies_one_setting_at_a_time():
    commands = dry_run("Downstream/Text/script/study_amazon_settings.py")
    frozen = [c for c in commands if "--adapter=none" in c]
    side = [c for c in commands if "--adapter=side" in c and "--item_tower=fused" not in c]
    fused = [c for c in commands if "--item_tower=fused" in c]
    ids = [c for c in commands if "--item_tower=id" in c]
    assert (len(frozen), len(side), len(fused), len(ids)) == (8, 8, 11, 8) and len(commands) == 35
    assert all("--adapter=side" in c and "--source_checkpoint=runs/amazon-office-sasrec/best.pt" in c for c in fused)
    assert ["--item_fusion=concat" in c or "--item_fusion=gate" in c or "--id_dropout=0.2" in c
            or "--id_dropout=0.5" in c or "--item_head=moe" in c or "--dropout=0.5" in c
            or "--warm_start=runs/amazon-sci-side-head-user/best.pt" in c for c in fused] == [True] * 11
    two_stage = [c for c in fused if "--warm_start=" in c]  # over the text row: its linear head, no MoE
    assert len(two_stage) == 2 and not any("--item_head=moe" in c for c in two_stage)
    assert all("--train_head=true" in c and "--train_user_encoder=true" in c for c in frozen + side)
    assert sum("--max_seq_len=50" in c for c in ids) == sum("--embedding_dim=256" in c for c in ids) == 1
    assert sum("--embedding_dim=128" in c for c in ids) == sum("--lr_schedule=cosine" in c for c in ids) + 1 == 2
    joined = "\n".join(frozen)
    for variant in ("--score=cosine", "--item_pooling=mean", "--inbatch_correction=popularity",
                    "--inbatch_correction=inclusion", "--init_std=0.02"):
        assert joined.count(variant) == 1, variant
    assert joined.count("--max_title_tokens=64") == 2  # the 64-token variant, and its init_std one


@pytest.mark.parametrize("script", ["Downstream/Text/script/study_amazon.py",
                                    "Downstream/Text/script/study_amazon_settings.py",
                                    "Downstream/CV/script/study_placement.py",
                                    "Downstream/Text/script/study_target_scaling.py"])
def test_a_study_refuses_one_run_name_for_all_its_runs(script):
    # passed through, it named every run (the Amazon source run too) the same, so each replaced the last
    with pytest.raises(subprocess.CalledProcessError) as failed:
        dry_run(script, "--run_name=mine")
    assert "--run_name=mine cannot be given to a study" in failed.value.stderr


def test_amazon_study_reuses_a_finished_source_unless_it_is_named(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("study_amazon", REPO_ROOT / "Downstream/Text/script/study_amazon.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    target = ["amazon-sci-side-head-user"]
    assert study.sources_to_run(target, tmp_path) == [study.SOURCE_NAME]  # no source yet: it is trained first
    (tmp_path / study.SOURCE_NAME).mkdir()
    (tmp_path / study.SOURCE_NAME / "results.json").write_text("{}")
    assert study.sources_to_run(target, tmp_path) == []  # finished: reused, not retrained
    assert f"= {study.SOURCE_NAME}: finished (results.json), reused" in capsys.readouterr().out
    # named: it runs (and decides for itself)
    assert study.sources_to_run([study.SOURCE_NAME, *target], tmp_path) == [study.SOURCE_NAME]
    assert study.sources_to_run(["amazon-sci-id-sasrec"], tmp_path) == []  # nothing reads it
    # the wide rows read the wide source only
    wide = [n for n, settings in study.RUNS.items() if settings.get("source_checkpoint") == study.FROM_WIDE_SOURCE]
    assert wide and study.sources_to_run(wide, tmp_path) == [study.WIDE_SOURCE_NAME]


def test_a_dataset_given_to_the_amazon_study_reaches_the_target_runs_only():
    """--dataset names the target data (e.g. a copy elsewhere); the Office source keeps its own."""
    commands = dry_run("Downstream/Text/script/study_amazon.py", "--only=amazon-office-sasrec,amazon-sci-side-head-user",
                       "--dataset=/elsewhere/scientific")
    source, target = commands
    assert "--dataset=/elsewhere" not in source and "amazon/office" in source
    assert target.endswith("--dataset=/elsewhere/scientific")
