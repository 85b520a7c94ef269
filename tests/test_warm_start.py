"""warm_start (LP-FT): a target run's trained head and user encoder loaded before the adapters are added."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from adapter4rec.checkpoint import FORMAT, CheckpointError, load_run_weights, read_checkpoint, save_atomic
from adapter4rec.config import parse_args
from adapter4rec.experiments.report import method_name
from adapter4rec.training import train
from adapter4rec.training.assemble import prepare_model
from adapter4rec.training.build import build_model, load_data
from tests.conftest import tiny_args

CPU = torch.device("cpu")


def _config(tiny_bert, tiny_data, out, domain="target", **overrides):
    base = dict(stage="downstream") if domain == "target" else {}
    return parse_args(tiny_args(tiny_bert, tiny_data / domain, out, **{**base, **overrides}))


@pytest.fixture(scope="module")
def frozen_run(tiny_bert, tiny_data, tmp_path_factory):
    """A source checkpoint, then the frozen-features run on the target (head + user encoder train) from it."""
    out = tmp_path_factory.mktemp("warm")
    source_cfg = _config(tiny_bert, tiny_data, out, domain="source")
    torch.manual_seed(0)
    source = build_model(source_cfg, load_data(source_cfg))
    save_atomic({"format": FORMAT, "config": dataclasses.asdict(source_cfg), "model": source.state_dict()},
                out / "source.pt")
    (out / "results.json").write_text("{}")  # the hand-made checkpoints of this folder count as a finished run's
    frozen_cfg = _config(tiny_bert, tiny_data, out, source_checkpoint=out / "source.pt", tune="peft",
                         adapter="none", train_head="true", train_user_encoder="true", run_name="frozen",
                         max_steps_per_epoch=3, lr=0.01)
    train.run(frozen_cfg)
    return out, frozen_cfg


def _outputs(model, data):
    model.eval()
    with torch.no_grad():
        return model.user_states(data.split.test.history[:6]), model.item_table()


def test_adapter_run_starts_from_the_frozen_run(tiny_bert, tiny_data, frozen_run):
    out, frozen_cfg = frozen_run
    data = load_data(frozen_cfg)
    # the frozen run's trained model, computed through the backbone (no state cache), as the reference
    reference = prepare_model(dataclasses.replace(frozen_cfg, cache_frozen_backbone=False), data, CPU)
    load_run_weights(reference, read_checkpoint(out / "frozen" / "best.pt"))
    want = _outputs(reference, data)

    houlsby = dict(source_checkpoint=out / "source.pt", tune="peft", adapter="houlsby", item_adapter_size=8,
                   user_adapter_size=8)
    cold = prepare_model(_config(tiny_bert, tiny_data, out, **houlsby), data, CPU)
    assert not torch.allclose(_outputs(cold, data)[0], want[0], atol=1e-3)  # the check can fail
    warm_cfg = _config(tiny_bert, tiny_data, out, warm_start=out / "frozen" / "best.pt", **houlsby)
    warm = prepare_model(warm_cfg, data, CPU)
    # the adapters are the identity at init, so the adapted model starts out computing the frozen run's scores
    for got, exp in zip(_outputs(warm, data), want):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)
    # the warm head is frozen under tune=peft and is the trained one, not the source's
    trained = read_checkpoint(out / "frozen" / "best.pt")["model"]
    head = [k for k in trained if "item_encoder.backbone" not in k and k.startswith("item_encoder.")]
    assert head and all(torch.equal(warm.state_dict()[k], trained[k]) for k in head)
    assert method_name(dataclasses.asdict(warm_cfg)) == "Houlsby, LP-FT"


def test_warm_start_refuses_what_does_not_fit(tiny_bert, tiny_data, frozen_run):
    out, frozen_cfg = frozen_run
    data = load_data(frozen_cfg)
    warm = out / "frozen" / "best.pt"
    with pytest.raises(CheckpointError, match="source_checkpoint=''"):  # another backbone under the head
        prepare_model(_config(tiny_bert, tiny_data, out, warm_start=warm), data, CPU)
    with pytest.raises(CheckpointError, match="stage='pretrain'"):  # a source run belongs in source_checkpoint
        prepare_model(_config(tiny_bert, tiny_data, out, warm_start=out / "source.pt"), data, CPU)
    # a warm run that trained adapters needs this run to add the same ones; a key they do not make is refused
    ckpt = read_checkpoint(warm)
    ckpt["model"]["user_encoder.extra.weight"] = torch.zeros(2)
    ckpt["config"].update(adapter="houlsby", item_adapter_size=8)
    save_atomic(ckpt, out / "extra.pt")
    with pytest.raises(CheckpointError, match=r"2 setting\(s\).*warm run adapter='houlsby', this run adapter='none'; "
                                              r"warm run item_adapter_size=8, this run item_adapter_size=64"):
        prepare_model(_config(tiny_bert, tiny_data, out, source_checkpoint=out / "source.pt",
                              warm_start=out / "extra.pt"), data, CPU)
    with pytest.raises(CheckpointError, match=r"with its adapters \(the warm run had adapter='houlsby'\): 1 "
                                              r"unexpected key\(s\) \['user_encoder.extra"):
        prepare_model(_config(tiny_bert, tiny_data, out, source_checkpoint=out / "source.pt", tune="peft",
                              adapter="houlsby", item_adapter_size=8, warm_start=out / "extra.pt"), data, CPU)
    with pytest.raises(SystemExit, match="warm_start=.*empty when stage=pretrain"):
        _config(tiny_bert, tiny_data, out, domain="source", warm_start=warm)


def _warm_file(path, **settings):
    """A warm-start checkpoint file holding only a config (the settings check runs before any weight is read)."""
    warm = dataclasses.asdict(parse_args([f"--{k}={v}" for k, v in {"stage": "downstream", **settings}.items()]))
    save_atomic({"format": FORMAT, "config": warm, "model": {}}, path)
    return path


def test_warm_start_refuses_other_item_features_or_scores_listing_every_key(tmp_path):
    from adapter4rec.checkpoint import load_warm_start
    path = _warm_file(tmp_path / "warm.pt", max_title_tokens=64, item_pooling="mean", text_fields="title,abstract",
                      score="cosine", temperature=0.1, dataset="elsewhere")
    this = dataclasses.asdict(parse_args(["--stage=downstream", "--score=cosine"]))
    with pytest.raises(CheckpointError) as err:
        load_warm_start(torch.nn.Linear(2, 2), path, this)
    msg = str(err.value)
    assert "\n" not in msg and "5 setting(s)" in msg
    for part in ("warm run dataset='elsewhere', this run dataset='Dataset/default/source'",
                 "warm run max_title_tokens=64, this run max_title_tokens=30",
                 "warm run item_pooling='mean', this run item_pooling='cls'",
                 "warm run text_fields='title,abstract', this run text_fields='title'",
                 "warm run temperature=0.1, this run temperature=0.07", "warm run modality"):
        assert (part in msg) == (part != "warm run modality"), part
    # a differing score (or learned temperature) is named too; a temperature is compared only under cosine
    dot = _warm_file(tmp_path / "dot.pt", temperature=0.5)
    with pytest.raises(CheckpointError, match=r"2 setting\(s\).*: warm run score='dot', this run score='cosine'; "
                                              r"warm run temperature=0.5, this run temperature=0.07; warm-start"):
        load_warm_start(torch.nn.Linear(2, 2), dot, this)
    dot_here = dataclasses.asdict(parse_args(["--stage=downstream"]))
    assert load_warm_start(torch.nn.Linear(2, 2), dot, dot_here) == (torch.load(dot)["config"], {})
    image = _warm_file(tmp_path / "image.pt", modality="image", images_lmdb="other.lmdb")
    with pytest.raises(CheckpointError, match="warm run modality='image', this run modality='text'; warm run "
                                              "images_lmdb='other.lmdb', this run images_lmdb='images.lmdb'"):
        load_warm_start(torch.nn.Linear(2, 2), image, dot_here)


def test_the_amazon_study_lp_ft_pairs_pass_the_warm_start_check():
    """study_amazon.py warm-starts each fine-tuning row from the frozen-features run at its own token budget, and
    each two-stage fused row from its text row: the settings check must accept those pairs (loss, batch, dropout,
    learning rates, epochs, tune, adapter, item tower differ)."""
    import importlib.util

    from adapter4rec.checkpoint import warm_mismatches
    from adapter4rec.config import REPO_ROOT
    spec = importlib.util.spec_from_file_location("study_amazon", REPO_ROOT / "Downstream/Text/script/study_amazon.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)

    def config(name):  # as the study's sweep passes it to Downstream/Text/run.py
        settings = {**study.COMMON, "dataset": str(study.SCIENTIFIC), **study.RUNS[name]}
        return dataclasses.asdict(parse_args([f"--{k}={v}" for k, v in settings.items()], stage="downstream",
                                             modality="text"))
    pairs = [(name, settings["warm_start"].split("/")[1].replace(study.SEED_SUFFIX, ""))
             for name, settings in study.RUNS.items() if settings.get("warm_start")]
    assert len(pairs) == 9  # 4 LP-FT rows, 5 two-stage fused rows (from Office, without it, the cold study, wide)
    for name, warm in pairs:
        assert warm_mismatches(config(warm), config(name)) == [], (name, warm)
    # and the 64-token frozen run would be refused as the warm start of a 32-token row
    assert warm_mismatches(config("amazon-sci-frozen-transfer"), config("amazon-sci-houlsby")) == \
        ["warm run max_title_tokens=64, this run max_title_tokens=32"]


@pytest.fixture(scope="module")
def side_run(tiny_bert, tiny_data, frozen_run):
    """A trained side network + head + user encoder (item_tower=modal) on the target, from the source."""
    out, _ = frozen_run
    settings = dict(source_checkpoint=out / "source.pt", tune="peft", adapter="side", adapter_where="item",
                    side_layers="1", item_adapter_size=8, train_head="true", train_user_encoder="true",
                    max_steps_per_epoch=3, lr=0.01, item_adapter_lr=0.01)
    train.run(_config(tiny_bert, tiny_data, out, run_name="side", **settings))
    return out, settings


def test_a_fused_run_adds_target_ids_to_a_trained_side_network_run(tiny_bert, tiny_data, side_run):
    out, settings = side_run
    data = load_data(_config(tiny_bert, tiny_data, out, **settings))
    reference = prepare_model(_config(tiny_bert, tiny_data, out, cache_frozen_backbone="false", **settings), data,
                              CPU)
    load_run_weights(reference, read_checkpoint(out / "side" / "best.pt"))
    want = _outputs(reference, data)
    fused = dict(settings, item_tower="fused", cache_frozen_backbone="false")
    plain = prepare_model(_config(tiny_bert, tiny_data, out, **fused), data, CPU)
    model = prepare_model(_config(tiny_bert, tiny_data, out, warm_start=out / "side" / "best.pt", **fused), data, CPU)
    trained = read_checkpoint(out / "side" / "best.pt")["model"]
    side = [k for k in trained if ".side." in k or k.startswith("item_encoder.side")]
    assert side, sorted(trained)[:8]
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained)  # the side network is the trained one
    assert not all(torch.equal(plain.state_dict()[k], trained[k]) for k in side)  # (the check can fail)
    ids = model.item_encoder.id_fusion.embedding.weight
    assert ids.requires_grad and not ids.any()  # a fresh ID table that trains, at zero: c + 0
    assert plain.item_encoder.id_fusion.embedding.weight[1:].abs().min() > 0  # (not so without the warm start)
    with pytest.raises(CheckpointError, match="item_fusion=gate cannot start from the content run's scores"):
        prepare_model(_config(tiny_bert, tiny_data, out, warm_start=out / "side" / "best.pt", item_fusion="gate",
                              **fused), data, CPU)
    assert method_name(dataclasses.asdict(_config(tiny_bert, tiny_data, out, warm_start="x", **fused))).endswith(
        "+ target item IDs (sum), in two stages")
    for got, exp in zip(_outputs(model, data), want):  # so the fused model starts at the side run's scores
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)


def test_warm_start_refuses_ids_to_content_other_cold_items_and_other_adapters(tmp_path):
    from adapter4rec.checkpoint import warm_mismatches

    def config(**settings):
        return dataclasses.asdict(parse_args([f"--{k}={v}" for k, v in {"stage": "downstream", **settings}.items()]))
    side = dict(tune="peft", adapter="side", item_adapter_size=8)
    assert warm_mismatches(config(**side), config(item_tower="fused", **side)) == []
    assert warm_mismatches(config(item_tower="fused"), config()) == [
        "warm run item_tower='fused', this run item_tower='modal'"]
    assert warm_mismatches(config(item_tower="id"), config(item_tower="fused")) == [
        "warm run item_tower='id', this run item_tower='fused'"]
    # a warm run that trained on this run's cold items would leak them
    assert warm_mismatches(config(), config(cold_items=0.1)) == ["warm run cold_items=0.0, this run cold_items=0.1"]
    assert warm_mismatches(config(**side), config(**dict(side, side_pooling="both"))) == [
        "warm run side_pooling='item', this run side_pooling='both'"]
    assert warm_mismatches(config(), config(**side)) == []  # an adapter-free warm run: any adapter may follow


def test_a_finished_two_stage_run_is_pinned_to_its_first_stage(tiny_bert, tiny_data, frozen_run, tmp_path):
    """Retraining, replacing or deleting the first stage after the second finished: rebuilding the second (recommend,
    export) refuses in one line naming the changed file, instead of silently giving another model; a first stage
    still running or unfinished is refused as a warm start."""
    import shutil

    from adapter4rec.run.folder import FolderLock, RunFolderError
    from adapter4rec.training.assemble import rebuild_run
    out, _ = frozen_run
    first = tmp_path / "first"
    shutil.copytree(out / "frozen", first)
    second = _config(tiny_bert, tiny_data, tmp_path, source_checkpoint=out / "source.pt", tune="peft",
                     adapter="houlsby", item_adapter_size=8, user_adapter_size=8, warm_start=first / "best.pt",
                     run_name="second", max_steps_per_epoch=2)
    train.run(second)
    rebuild_run(tmp_path / "second")  # unchanged: rebuilds
    ckpt = read_checkpoint(first / "best.pt")
    ckpt["model"] = {k: v + 0.01 for k, v in ckpt["model"].items()}  # the first stage trained again
    save_atomic(ckpt, first / "best.pt")
    with pytest.raises(CheckpointError, match=r"second/best.pt was built over warm_start=.*first/best.pt, which has "
                                              r"changed since"):
        rebuild_run(tmp_path / "second")
    (first / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="which no longer exists"):
        rebuild_run(tmp_path / "second")
    # a warm start from a run that has not finished, or that a running run holds
    shutil.copytree(out / "frozen", tmp_path / "unfinished")
    (tmp_path / "unfinished" / "results.json").unlink()
    data = load_data(second)
    with pytest.raises(RunFolderError, match="no results.json: the run is unfinished"):
        prepare_model(dataclasses.replace(second, warm_start=str(tmp_path / "unfinished" / "best.pt")), data, CPU)
    shutil.copytree(out / "frozen", tmp_path / "running")
    with FolderLock(tmp_path / "running") as lock:
        lock.acquire()
        with pytest.raises(RunFolderError, match="in use by a running run"):
            prepare_model(dataclasses.replace(second, warm_start=str(tmp_path / "running" / "best.pt")), data, CPU)


def test_a_fresh_head_over_a_source_must_train(tiny_bert, tiny_data, frozen_run):
    """A linear-head source under item_head=moe hands over no head: zero-shot would rank with a random head, and a
    PEFT run without train_head would train over it; both are refused in one line."""
    out, frozen_cfg = frozen_run
    data = load_data(frozen_cfg)
    source = dict(source_checkpoint=out / "source.pt", item_head="moe")
    with pytest.raises(CheckpointError, match="item_head='linear' does not load .* zero_shot=true trains nothing"):
        prepare_model(_config(tiny_bert, tiny_data, out, zero_shot="true", **source), data, CPU)
    with pytest.raises(CheckpointError, match="train_head=false keeps it frozen"):
        prepare_model(_config(tiny_bert, tiny_data, out, tune="peft", adapter="houlsby", **source), data, CPU)
    prepare_model(_config(tiny_bert, tiny_data, out, tune="peft", adapter="houlsby", train_head="true", **source),
                  data, CPU)  # a trained fresh head is fine


def test_fused_to_fused_warm_start_compares_the_fusion():
    from adapter4rec.checkpoint import warm_mismatches

    def config(**settings):
        return dataclasses.asdict(parse_args([f"--{k}={v}" for k, v in {"stage": "downstream", **settings}.items()]))
    assert warm_mismatches(config(item_tower="fused", item_fusion="concat"),
                           config(item_tower="fused", item_fusion="gate")) == [
        "warm run item_fusion='concat', this run item_fusion='gate'"]
    assert warm_mismatches(config(), config(item_tower="fused", item_fusion="concat")) == []  # modal -> fused


def test_a_warm_start_from_the_runs_own_folder_or_in_a_cycle_is_refused(tiny_bert, tiny_data, frozen_run):
    out, frozen_cfg = frozen_run
    own = dataclasses.replace(frozen_cfg, warm_start=str(out / "frozen" / "best.pt"), overwrite=True)
    with pytest.raises(CheckpointError, match="lies in this run's own folder"):
        train.run(own)
    # B warm-starts from the frozen run; the frozen run retrained from B would leave B unrebuildable
    b = dataclasses.replace(frozen_cfg, warm_start=str(out / "frozen" / "best.pt"), run_name="b", epochs=1)
    train.run(b)
    cycle = dataclasses.replace(frozen_cfg, warm_start=str(out / "b" / "best.pt"), overwrite=True)
    with pytest.raises(CheckpointError, match="a file of this run's own folder: training this run from it is a "
                                              "cycle"):
        train.run(cycle)
    assert read_checkpoint(out / "frozen" / "best.pt")  # refused before the folder was touched


def test_a_warm_start_from_an_adapter_run_that_was_itself_warm_started_is_refused(tiny_bert, tiny_data, frozen_run):
    # its checkpoint holds its adapters only: the head and user encoder it inherited would silently be missing
    out, frozen_cfg = frozen_run
    adapter = dict(tune="peft", adapter="houlsby", item_adapter_size=8, user_adapter_size=8,
                   source_checkpoint=out / "source.pt", max_steps_per_epoch=2, epochs=1)
    train.run(_config(tiny_bert, tiny_data, out, warm_start=out / "frozen" / "best.pt", run_name="lpft", **adapter))
    again = _config(tiny_bert, tiny_data, out, warm_start=out / "lpft" / "best.pt", run_name="again", **adapter)
    with pytest.raises(CheckpointError, match="itself started from warm_start=.*export it to a full checkpoint"):
        prepare_model(again, load_data(again), CPU)
