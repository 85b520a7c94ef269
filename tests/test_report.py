"""The experiment report: seeds pooled into rows (mean ± sample std), baselines and the negative-transfer
sentence, protocols that must agree, CSV columns, figures; `--seeds` in launchers; optional TensorBoard.
Run directories are fake (results.json / config.json / metrics.jsonl with known numbers)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from adapter4rec.config import REPO_ROOT, Config
from adapter4rec.experiments import report
from adapter4rec.training.tb import Board

PROTOCOL = "leave-one-out, full ranking, K=5,10,20"
PRETRAIN = REPO_ROOT / "Pretraining" / "Text" / "script" / "sm_base_sasrec.py"
HOULSBY = dict(stage="downstream", tune="peft", adapter="houlsby", source_checkpoint="runs/src/best.pt")
LORA = dict(HOULSBY, adapter="lora")
SCRATCH = dict(stage="downstream", tune="all", source_checkpoint="")


def make_run(root: Path, name: str, cfg: dict, hr10: float, seed: int = 1, protocol: str = PROTOCOL,
             curve: tuple = (0.1, 0.2), seconds: float = 10.0, ckpt_bytes: int = 0) -> Path:
    """A finished run directory: every test metric = hr10 except NDCG@10 = hr10 / 2."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(dict(cfg, seed=seed, run_name=name, output_dir=str(root))))
    test = {m: hr10 for m in report.METRICS} | {"ndcg@10": hr10 / 2, "users": 100}
    popularity = {m: 0.05 for m in report.METRICS} | {"users": 100}
    (run / "results.json").write_text(json.dumps({
        "test": test, "popularity_test": popularity, "train_seconds": seconds, "trainable_params": 25,
        "total_params": 1000, "protocol": protocol}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": 1.0, "hr@10": v}) + "\n"
                                               for e, v in enumerate(curve)))
    if ckpt_bytes:
        (run / "best.pt").write_bytes(b"\0" * ckpt_bytes)
    return run


@pytest.fixture
def houlsby_seeds(tmp_path) -> list[Path]:
    """Houlsby over seeds 1, 2, 3 (HR@10 0.1, 0.2, 0.3: mean 0.2, sample std 0.1) and LoRA over one seed."""
    runs = [make_run(tmp_path, f"houlsby-seed{s}", HOULSBY, hr, seed=s, seconds=10.0 * s, ckpt_bytes=2**20 * s)
            for s, hr in ((1, 0.1), (2, 0.2), (3, 0.3))]
    return runs + [make_run(tmp_path, "lora", LORA, 0.15, seed=1)]


def test_seeds_pool_into_one_row_with_mean_and_sample_std(houlsby_seeds):
    rows = report.collect(houlsby_seeds)
    assert [r["label"] for r in rows] == ["Houlsby", "LoRA"]
    houlsby, lora = rows
    assert houlsby["n"] == 3 and houlsby["seeds"] == [1, 2, 3] and houlsby["group"] == "houlsby"
    assert houlsby["hr@10"] == pytest.approx(0.2) and houlsby["hr@10_std"] == pytest.approx(0.1)  # not 0.0816 (n)
    assert houlsby["ndcg@10"] == pytest.approx(0.1) and houlsby["ndcg@10_std"] == pytest.approx(0.05)
    assert houlsby["seconds"] == pytest.approx(20.0) and houlsby["ckpt_mb"] == pytest.approx(2.0)
    assert houlsby["pct"] == pytest.approx(2.5)
    text = report.markdown(rows)
    assert "sample standard deviation (n - 1" in text
    assert "| Houlsby | 3 | 25 | 2.500 | 2.00 | 0.2000 ± 0.1000 | 0.2000 ± 0.1000 |" in text
    assert "| LoRA | 1 | 25 | 2.500 | - | 0.1500 | 0.1500 | 0.1500 | 0.1500 | 0.0750 | 0.1500 | 0.1500 | 10 |" in text
    assert f"Protocol: {PROTOCOL}." in text and "| popularity | - | 0 | 0 | - | 0.0500 |" in text


def test_only_seed_and_bookkeeping_keys_are_pooled(tmp_path):
    a = make_run(tmp_path, "a", dict(HOULSBY, lr=1e-3, device="cpu", keep_last=1), 0.1, seed=1)
    b = make_run(tmp_path, "b", dict(HOULSBY, lr=1e-3, device="cuda", keep_last=3), 0.3, seed=2)
    c = make_run(tmp_path, "c", dict(HOULSBY, lr=1e-4), 0.2, seed=1)  # another learning rate: its own row
    d = make_run(tmp_path, "d", dict(HOULSBY, lr=1e-4, patience=Config().patience), 0.4, seed=2)  # default spelled
    rows = report.collect([a, b, c, d])
    assert [(r["runs"], r["hr@10"]) for r in rows] == [(["a", "b"], pytest.approx(0.2)),
                                                        (["c", "d"], pytest.approx(0.3))]
    assert [r["label"] for r in rows] == ["Houlsby [a]", "Houlsby [c]"]  # same method twice: told apart


def test_a_seed_retrained_with_overwrite_stays_in_its_row(tmp_path):
    """overwrite=true changes how a run starts, not what it computes: one definition (config.RUNTIME_KEYS) for the
    report, the run-folder check and resume (the report split such a seed into a second row of the same label)."""
    a = make_run(tmp_path, "a", HOULSBY, 0.1, seed=1)
    b = make_run(tmp_path, "a-seed2", dict(HOULSBY, overwrite=True, nonfinite="skip"), 0.3, seed=2)
    rows = report.collect([a, b])
    assert [r["runs"] for r in rows] == [["a", "a-seed2"]]
    from adapter4rec.run import folder, resume
    assert report.BOOKKEEPING - {"seed"} == folder.RUNTIME_KEYS <= resume.MAY_CHANGE


def test_negative_transfer_is_named(houlsby_seeds, tmp_path):
    scratch = make_run(tmp_path, "scratch", SCRATCH, 0.25)
    text = report.markdown(report.collect([*houlsby_seeds, scratch]))
    assert "| from scratch (target only) | 1 |" in text
    assert ("Negative transfer: Houlsby (HR@10 0.2000) is below training from scratch (0.2500); the gap is within "
            "one standard deviation over seeds.") in text
    assert "Negative transfer: LoRA (HR@10 0.1500) is below training from scratch (0.2500)." in text
    assert "No negative transfer" not in text


def test_a_one_seed_row_is_within_the_spread_of_a_seeded_scratch_row(houlsby_seeds, tmp_path):
    # LoRA (one seed, 0.15) against scratch over three seeds (0.16 +- 0.02): the spread is scratch's, whichever
    # row has the single seed (max() with a NaN first returned NaN, and the note was dropped)
    scratch = [make_run(tmp_path, f"scratch-seed{k}", SCRATCH, hr, seed=k) for k, hr in enumerate((0.14, 0.16, 0.18))]
    text = report.markdown(report.collect([*houlsby_seeds, *scratch]))
    assert ("Negative transfer: LoRA (HR@10 0.1500) is below training from scratch (0.1600); the gap is within one "
            "standard deviation over seeds.") in text


def test_no_negative_transfer_is_stated(houlsby_seeds, tmp_path):
    scratch = make_run(tmp_path, "scratch", SCRATCH, 0.15)  # LoRA ties it: not below
    text = report.markdown(report.collect([*houlsby_seeds, scratch]))
    assert "No negative transfer: every row transferred from a source checkpoint has HR@10 at or above training " \
           "from scratch (0.1500)." in text
    assert "Negative transfer:" not in text


def test_missing_scratch_run_means_no_check(houlsby_seeds):
    text = report.markdown(report.collect(houlsby_seeds))
    assert "Negative transfer could not be checked: no from-scratch run" in text
    assert "No negative transfer" not in text and "is below" not in text


def test_several_scratch_rows_each_transfer_row_meets_its_closest(tmp_path):
    runs = [make_run(tmp_path, "scratch-big", dict(SCRATCH, embedding_dim=128), 0.5),
            make_run(tmp_path, "scratch-small", dict(SCRATCH, embedding_dim=32), 0.1),
            make_run(tmp_path, "houlsby-small", dict(HOULSBY, embedding_dim=32), 0.2)]
    assert report.transfer_check(report.collect(runs))[0].startswith("No negative transfer")
    runs.append(make_run(tmp_path, "houlsby-big", dict(HOULSBY, embedding_dim=128), 0.4))
    lines = report.transfer_check(report.collect(runs))
    assert lines == ["Negative transfer: Houlsby [houlsby-big] (HR@10 0.4000) is below training from scratch "
                     "[scratch-big] (0.5000)."]


def test_mixed_protocols_are_refused_unless_allowed(houlsby_seeds, tmp_path):
    other = make_run(tmp_path, "other", SCRATCH, 0.2, protocol="sampled ranking over 100 negatives")
    with pytest.raises(SystemExit, match=r"different protocols.*houlsby-seed1, houlsby-seed2, houlsby-seed3, lora"
                                         r".*\[other\] sampled ranking.*--allow_mixed_protocols"):
        report.main([*map(str, houlsby_seeds), str(other)])
    text = report.main([*map(str, houlsby_seeds), str(other), "--allow_mixed_protocols"])
    assert "Protocols DIFFER" in text and "sampled ranking over 100 negatives" in text


def test_csv_has_mean_and_std_columns(houlsby_seeds, tmp_path):
    report.main([*map(str, houlsby_seeds), "--out", str(tmp_path / "out" / "rep")])
    assert (tmp_path / "out" / "rep.md").read_text().startswith("Test users: 100.")
    with open(tmp_path / "out" / "rep.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        lines = list(reader)
    for metric in report.METRICS:
        assert f"{metric}_mean" in reader.fieldnames and f"{metric}_std" in reader.fieldnames
    assert {"n_seeds", "seeds", "runs", "trainable_params", "trainable_pct", "checkpoint_mb",
            "train_seconds_mean"} <= set(reader.fieldnames)
    assert [line["method"] for line in lines] == ["popularity", "Houlsby", "LoRA"]
    houlsby, lora = lines[1], lines[2]
    assert houlsby["n_seeds"] == "3" and houlsby["seeds"] == "1;2;3"
    assert houlsby["runs"] == "houlsby-seed1;houlsby-seed2;houlsby-seed3"
    assert float(houlsby["hr@10_mean"]) == pytest.approx(0.2) and float(houlsby["hr@10_std"]) == pytest.approx(0.1)
    assert float(lora["hr@10_mean"]) == pytest.approx(0.15) and lora["hr@10_std"] == ""


def test_figures_are_written(houlsby_seeds, tmp_path):
    fig, curves = tmp_path / "Fig" / "hr.png", tmp_path / "Fig" / "curves.png"
    report.main([*map(str, houlsby_seeds), "--fig", str(fig), "--curves", str(curves)])
    for path in (fig, curves):
        assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_without_learning_curves_get_one_line_and_no_empty_figure(tmp_path, capsys, recwarn):
    runs = [make_run(tmp_path, name, HOULSBY, 0.1, curve=()) for name in ("zero-shot-a", "zero-shot-b")]
    curves = tmp_path / "curves.png"
    report.main([*map(str, runs), "--curves", str(curves)])
    assert not curves.exists()
    assert "report: --curves: no run has a learning curve" in capsys.readouterr().out
    assert not [w for w in recwarn if "No artists" in str(w.message)]


def test_help_prints(capsys):
    with pytest.raises(SystemExit) as done:
        report.main(["--help"])
    assert done.value.code == 0 and "--allow_mixed_protocols" in capsys.readouterr().out


def test_learning_curve_is_the_mean_over_seeds(tmp_path):
    runs = [make_run(tmp_path, "s1", HOULSBY, 0.1, curve=(0.1, 0.3, 0.5)),
            make_run(tmp_path, "s2", HOULSBY, 0.1, seed=2, curve=(0.2, 0.5))]  # stopped one epoch earlier
    (runs[1] / "metrics.jsonl").write_text((runs[1] / "metrics.jsonl").read_text()
                                           + json.dumps({"epoch": 1, "hr@10": 0.7}) + "\n")  # resumed: last wins
    from adapter4rec.experiments.report_figures import mean_curve
    epochs, values = mean_curve(runs)
    assert epochs == [0, 1, 2] and values == pytest.approx([0.15, 0.5, 0.5])


def launcher_dry_run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", *args], check=check, capture_output=True,
                          text=True)


def test_launcher_seeds_make_one_run_per_seed():
    out = launcher_dry_run("--seeds", "1,2,3", "--epochs=1").stdout
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert len(commands) == 3
    for seed, command in zip((1, 2, 3), commands):
        assert f" --seed={seed} " in command and f"--run_name=sm_base_sasrec-seed{seed} " in command
        assert command.endswith("--epochs=1")
    assert "--run_name=sm_base_sasrec-seed7" in launcher_dry_run("--seeds=7").stdout


def test_launcher_seeds_keep_a_given_run_name_as_the_stem():
    """A study passes --run_name to the launcher; with --seeds each seed still gets its own directory."""
    out = launcher_dry_run("--seeds", "4,5", "--run_name", "study-x").stdout
    names = [word for line in out.splitlines() for word in line.split() if word.startswith("--run_name=")]
    assert names == ["--run_name=study-x-seed4", "--run_name=study-x-seed5"]


def test_launcher_seeds_refuse_bad_lists_and_a_fixed_seed():
    assert "distinct integers" in launcher_dry_run("--seeds=1,x", check=False).stderr
    assert "same seed" in launcher_dry_run("--seeds=1,2", "--seed=5", check=False).stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorboard") is not None,
                    reason="the tensorboard package is installed")
def test_tensorboard_without_the_package_stops_before_any_work(tmp_path):
    from adapter4rec.training.train import run
    cfg = Config(tensorboard=True, output_dir=str(tmp_path), run_name="tb", dataset=str(tmp_path / "no-data"))
    with pytest.raises(SystemExit, match="pip install tensorboard"):
        run(cfg)
    assert not (tmp_path / "tb").exists()
    Board(Config(), tmp_path).epoch(0, 1.0, {"hr@10": 0.5})  # off: nothing imported, nothing written
    assert not (tmp_path / "tb").exists()


class FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter (the package is not installed); records calls."""
    calls: list = []

    def __init__(self, log_dir, purge_step):
        self.calls.append(("open", log_dir, purge_step))

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def fake_tensorboard(monkeypatch) -> list:
    monkeypatch.setattr(FakeWriter, "calls", [])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    return FakeWriter.calls


def test_tensorboard_scalars_of_an_epoch(tmp_path, fake_tensorboard):
    board = Board(Config(tensorboard=True), tmp_path)
    board.epoch(3, 0.5, {"hr@10": 0.2, "ndcg@10": 0.1, "users": 100})
    board.close()
    assert fake_tensorboard == [("open", str(tmp_path / "tb"), 3), ("train/loss", 0.5, 3), ("valid/hr@10", 0.2, 3),
                                ("valid/ndcg@10", 0.1, 3), ("close",)]


def test_training_writes_loss_and_validation_per_epoch(tiny_bert, tiny_data, tmp_path, fake_tensorboard):
    from adapter4rec.config import parse_args
    from adapter4rec.training.train import run
    from tests.conftest import tiny_args
    run(parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, epochs=2, max_steps_per_epoch=2,
                             run_name="r", tensorboard="true", keep_last=0)))
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert fake_tensorboard[0] == ("open", str(tmp_path / "r" / "tb"), 0) and fake_tensorboard[-1] == ("close",)
    for epoch, line in enumerate(lines):
        assert ("train/loss", line["loss"], epoch) in fake_tensorboard
        assert ("valid/hr@10", line["hr@10"], epoch) in fake_tensorboard


def test_unmasked_protocol_reported_next_to_the_masked_one(houlsby_seeds):
    for run, value in zip(houlsby_seeds[:3], (0.11, 0.13, 0.15)):
        res = json.loads((run / "results.json").read_text())
        res["test_no_mask"] = {"hr@10": value, "ndcg@10": value / 2, "mrr@10": value / 4, "users": 100}
        (run / "results.json").write_text(json.dumps(res))
    text = report.markdown(report.collect(houlsby_seeds))
    assert "Without history masking" in text
    assert "| Houlsby | 0.1300 ± 0.0200 | 0.0650 ± 0.0100 | 0.0325 ± 0.0050 |" in text
    assert "| LoRA |" not in text.split("Without history masking")[1]  # LoRA recorded none


def test_seeds_of_a_two_stage_row_pool_though_each_starts_from_its_own_seed(tmp_path):
    """study_amazon.py's two-stage rows warm-start seed N from the first stage's seed-N run (launch.SEED_SUFFIX)."""
    two_stage = dict(HOULSBY, item_tower="fused")
    runs = [make_run(tmp_path, name, dict(two_stage, warm_start=warm), hr, seed=seed)
            for name, warm, hr, seed in (("b", "runs/a/best.pt", 0.1, 12345), ("b-seed1", "runs/a-seed1/best.pt", 0.2, 1),
                                         ("c", "runs/other/best.pt", 0.3, 12345))]
    rows = report.collect(runs)
    assert [(r["n"], round(r["hr@10"], 4)) for r in rows] == [(2, 0.15), (1, 0.3)]  # another first stage: its own row
    assert rows[0]["label"].startswith("Houlsby, + target item IDs (sum), in two stages")


def test_a_truncated_run_file_is_one_line_and_a_folder_given_twice_counts_once(tmp_path):
    run = make_run(tmp_path, "a", HOULSBY, 0.1, seed=1)
    assert report.main([str(run), str(run), str(tmp_path / "a" / ".." / "a")]).count("| Houlsby | 1 |") == 1
    text = (run / "results.json").read_text()
    (run / "results.json").write_text(text[: len(text) // 2])
    with pytest.raises(report.ReportError, match=r"a/results.json cannot be read \(JSONDecodeError"):
        report.main([str(run)])
    (run / "results.json").write_text(text)
    (run / "config.json").write_text("")
    with pytest.raises(report.ReportError, match="a/config.json cannot be read"):
        report.main([str(run)])


def test_export_refuses_an_out_that_would_destroy_a_file(tmp_path):
    from adapter4rec.serving.export import check_export_out
    run = make_run(tmp_path, "a", HOULSBY, 0.1)
    (tmp_path / "notes.txt").write_text("mine")
    for out, message in ((run / "config.json", "is the name of a run's own file"),
                         (run / "epoch-3.pt", "is the name of a run's own file"),
                         (tmp_path / "notes.txt", "exists and is not an earlier export"),
                         (tmp_path / "notes.txt" / "full.pt", "lies under .*notes.txt, which is a file"),
                         (run, "is a directory")):
        with pytest.raises(SystemExit, match=message):
            check_export_out(run, out)
    check_export_out(run, run / "full.pt")  # not there yet: fine
