"""Bad input gives a clear error naming the file and the line (or the key / what is missing).

More cases: checkpoints in test_checkpoint.py; non-finite loss, unwritable output directory and
per-epoch checkpoints in test_faults.py (the table in docs/bad_input.md names the test of each row)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter4rec.config import parse_args
from adapter4rec.data.files import DataError, read_items, read_users
from adapter4rec.models.pretrained import CheckpointFolderError, checkpoint_dir, load_text_backbone
from tests.conftest import tiny_args

INDEX = {"i1": 1, "i2": 2, "i3": 3}


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ------------------------------------------------------------------------------------------ users file
def test_unknown_item_error_names_file_line_and_item(tmp_path):
    path = _write(tmp_path, "users.tsv", "u1\ti1 i2 i3\nu2\ti1 iX i2\n")
    with pytest.raises(DataError) as err:
        read_users(path, INDEX, min_seq_len=3, unknown_items="error")
    msg = str(err.value)
    assert f"{path}:2:" in msg and "'iX'" in msg and "'u2'" in msg and "unknown_items=drop" in msg


def test_unknown_item_drop_is_counted(tmp_path):
    path = _write(tmp_path, "users.tsv", "u1\ti1 i2 i3\nu2\ti1 iX i2 iY i3\n")
    data = read_users(path, INDEX, min_seq_len=3, unknown_items="drop")
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [1, 2, 3]]
    assert data.stats["unknown_items_dropped"] == 2


@pytest.mark.parametrize("line,columns", [("u2 i1 i2 i3", 1), ("u2\ti1 i2\ti3", 3)])
def test_malformed_users_line(tmp_path, line, columns):
    path = _write(tmp_path, "users.tsv", f"u1\ti1 i2 i3\n{line}\n")
    with pytest.raises(DataError, match=f"{columns} column") as err:
        read_users(path, INDEX, min_seq_len=3, unknown_items="error")
    assert f"{path}:2:" in str(err.value) and "user_id<TAB>item" in str(err.value)


def test_short_users_skipped_and_counted(tmp_path):
    path = _write(tmp_path, "users.tsv", "u1\ti1 i2 i3\nu2\ti1 i2\nu3\ti3\n")
    data = read_users(path, INDEX, min_seq_len=3, unknown_items="error")
    assert data.user_ids == ["u1"]
    assert data.stats["short_users_skipped"] == 2 and data.stats["lines"] == 3


def test_empty_after_filtering(tmp_path):
    # one user too short, one left with 2 items after dropping an unknown item
    path = _write(tmp_path, "users.tsv", "u1\ti1 i2\nu2\ti1 iZ i3\n")
    with pytest.raises(DataError) as err:
        read_users(path, INDEX, min_seq_len=3, unknown_items="drop")
    msg = str(err.value)
    assert str(path) in msg and "no user left" in msg and "2 users shorter than min_seq_len=3" in msg
    assert "1 unknown items dropped" in msg


# ------------------------------------------------------------------------------------------ items file
def test_malformed_items_line(tmp_path):
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\ni2 no tab here\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    assert f"{path}:2:" in str(err.value) and "item_id<TAB>title" in str(err.value)


def test_empty_title(tmp_path):
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\n\ni2\t  \tan abstract\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    assert f"{path}:3:" in str(err.value) and "'i2'" in str(err.value) and "empty title" in str(err.value)


def test_conflicting_duplicate_item(tmp_path):
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\ni2\tTitle two\ni1\tAnother title\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    msg = str(err.value)
    assert f"{path}:3:" in msg and "'i1'" in msg and "Title one" in msg and "Another title" in msg


def test_duplicate_item_differing_only_in_its_abstract_is_a_conflict(tmp_path):
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\tFirst abstract\ni2\tTitle two\ti1\ni1\tTitle one\tOther\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    assert f"{path}:3:" in str(err.value) and "'i1'" in str(err.value)
    same = _write(tmp_path, "same.tsv", "i1\tTitle one\tAbs\ni1\tTitle one\tAbs\n")
    assert read_items(same).duplicates_skipped == 1


def test_identical_duplicate_item_skipped_and_counted(tmp_path):
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\ni2\tTitle two\ni1\tTitle one\r\n")
    cat = read_items(path)
    assert cat.ids == ["i1", "i2"] and cat.duplicates_skipped == 1


def test_over_long_title_is_truncated(tiny_bert, tmp_path):
    # not an error: like every title it is cut to max_title_tokens tokens ([CLS] and [SEP] included), counted
    from adapter4rec.data.text import build_token_table
    from adapter4rec.models.pretrained import load_tokenizer
    path = _write(tmp_path, "items.tsv", "i1\t" + "football " * 20000 + "\ni2\tmarkets\n")
    table = build_token_table(read_items(path), load_tokenizer(tiny_bert), ["title"], max_tokens=16)
    assert table.lengths.tolist() == [0, 16, 3] and table.ids.shape == (3, 16)
    assert table.truncated == 1


def test_text_fields_reading_an_abstract_no_item_has_is_refused_and_a_partial_one_counted(tiny_bert, tmp_path):
    from adapter4rec.training.build import load_data, token_table
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write(data_dir, "users.tsv", "".join(f"u{u}\ti1 i2 i3 i4 i5\n" for u in range(4)))
    _write(data_dir, "items.tsv", "".join(f"i{i}\tTitle {i}\n" for i in range(1, 6)))
    cfg = parse_args(tiny_args(tiny_bert, data_dir, tmp_path, text_fields="title,abstract"))
    with pytest.raises(DataError, match="reads the abstract \\(third column\\), which no item has"):
        token_table(cfg, load_data(cfg), tiny_bert)
    _write(data_dir, "items.tsv", "i1\tTitle 1\tan abstract\n" + "".join(f"i{i}\tTitle {i}\n" for i in range(2, 6)))
    data = load_data(cfg)
    token_table(cfg, data, tiny_bert)
    assert data.stats["items_without_abstract"] == 4


@pytest.mark.parametrize("name", ["items.tsv", "users.tsv"])
def test_non_utf8_bytes(tmp_path, name):
    good = b"i1\tTitle one\n" if name == "items.tsv" else b"u1\ti1 i2 i3\n"
    path = _write(tmp_path, name, good + b"i2\tcaf\xe9 \xff\n")
    with pytest.raises(DataError) as err:
        read_items(path) if name == "items.tsv" else read_users(path, INDEX, 3, "error")
    assert f"{path}:2:" in str(err.value) and "UTF-8" in str(err.value)


def test_utf8_bom_is_not_part_of_the_first_id(tmp_path):
    items = _write(tmp_path, "items.tsv", "\ufeffi1\tTitle one\ni2\tTitle two\ni3\tTitle three\n")
    users = _write(tmp_path, "users.tsv", "\ufeffu1\ti1 i2 i3\n")
    cat = read_items(items)
    assert cat.ids[0] == "i1"
    assert read_users(users, cat.index, 3, "error").user_ids == ["u1"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_items(tmp_path / "nope.tsv")


# ------------------------------------------------------------------------------------------ item encoder folder
def _cfg(tiny_bert, tiny_data, tmp_path, encoder):
    return parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, item_encoder=encoder))


def test_missing_item_encoder_folder(tiny_bert, tiny_data, tmp_path):
    folder = tmp_path / "no-such-model"
    with pytest.raises(CheckpointFolderError) as err:
        checkpoint_dir(_cfg(tiny_bert, tiny_data, tmp_path, folder))
    assert str(folder) in str(err.value) and "does not exist" in str(err.value)
    assert "config.json" in str(err.value)  # says what to put there


@pytest.mark.parametrize("removed,expected", [
    (["model.safetensors"], "model.safetensors or pytorch_model.bin"),
    (["config.json"], "config.json"),
    (["tokenizer.json", "vocab.txt"], "tokenizer files"),
])
def test_incomplete_item_encoder_folder(tiny_bert, tiny_data, tmp_path, removed, expected):
    folder = tmp_path / "partial"
    shutil.copytree(tiny_bert, folder)
    for name in removed:
        (folder / name).unlink()
    with pytest.raises(CheckpointFolderError) as err:
        checkpoint_dir(_cfg(tiny_bert, tiny_data, tmp_path, folder))
    msg = str(err.value)
    assert str(folder) in msg and "incomplete" in msg and expected in msg
    assert checkpoint_dir(_cfg(tiny_bert, tiny_data, tmp_path, tiny_bert)) == tiny_bert  # control


def test_weights_missing_parameters(tiny_bert, tmp_path):
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "pruned"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(folder / "model.safetensors")
    dropped = [k for k in weights if "layer.1." in k]
    save_file({k: v for k, v in weights.items() if k not in dropped}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(CheckpointFolderError, match=f"miss {len(dropped)} parameter"):
        load_text_backbone(folder)


# ------------------------------------------------------------------------------------------ config values
@pytest.mark.parametrize("override,key", [
    ({"lr": -1}, "lr"),
    ({"item_encoder_lr": 0}, "item_encoder_lr"),
    ({"max_seq_len": 0}, "max_seq_len"),
    ({"embedding_dim": 10, "num_heads": 3}, "num_heads"),
    ({"select_metric": "ndcg@7"}, "select_metric"),
    ({"select_metric": "map@10"}, "select_metric"),
    ({"min_seq_len": 2}, "min_seq_len"),
    ({"dropout": 1.0}, "dropout"),
    ({"topk": "5,x"}, "topk"),
    ({"loss": "hinge"}, "loss"),
    ({"text_fields": "title,body"}, "text_fields"),
    ({"source_checkpoint": "x.pt"}, "source_checkpoint"),  # stage=pretrain by default
    ({"keep_last": -1}, "keep_last"),
    ({"nonfinite": "ignore"}, "nonfinite"),
    ({"save_every_steps": -5}, "save_every_steps"),
])
def test_config_out_of_range(tiny_bert, tiny_data, tmp_path, override, key):
    with pytest.raises(SystemExit) as err:
        parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, **override))
    assert f"{key}=" in str(err.value.code)


def test_unknown_key_suggests_the_right_one(tiny_bert, tiny_data, tmp_path):
    argv = tiny_args(tiny_bert, tiny_data / "source", tmp_path) + ["--embeding_dim=8"]
    with pytest.raises(SystemExit) as err:
        parse_args(argv)
    assert "--embeding_dim=8" in str(err.value.code) and "did you mean --embedding_dim?" in str(err.value.code)


def test_bad_bool_and_bad_int(tiny_bert, tiny_data, tmp_path):
    for override, key in (({"progress": "maybe"}, "--progress"), ({"epochs": "two"}, "--epochs")):
        with pytest.raises(SystemExit) as err:
            parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, **override))
        assert key in str(err.value.code)


def test_valid_config_parses(tiny_bert, tiny_data, tmp_path):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, lr=0.5, topk="1,3", select_metric="hr@3"))
    assert cfg.lr == 0.5 and cfg.topk_list() == [1, 3] and cfg.embedding_dim == 16


def test_items_file_with_more_columns_than_the_format_is_refused(tmp_path):
    """MIND's raw news.tsv (id, category, subcategory, title, ...) would otherwise read its category as title."""
    path = _write(tmp_path, "items.tsv", "i1\tTitle one\tAbstract\ni2\tnews\tsports\tA title\tabs\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    msg = str(err.value)
    assert f"{path}:2:" in msg and "5 tab-separated columns" in msg and "'news'" in msg
    assert len(read_items(_write(tmp_path, "ok.tsv", "i1\tTitle one\tAbstract\ni2\tTwo\n"))) == 2


# ------------------------------------------------------------------------------------------ issue 26: one clear line
@pytest.mark.parametrize("arg,key", [
    ("--lr=inf", "lr"), ("--lr=nan", "lr"), ("--lr=-inf", "lr"), ("--item_encoder_lr=inf", "item_encoder_lr"),
    ("--item_adapter_lr=nan", "item_adapter_lr"), ("--user_adapter_lr=1e999", "user_adapter_lr"),
    ("--weight_decay=nan", "weight_decay"), ("--grad_clip=inf", "grad_clip"), ("--dropout=nan", "dropout"),
    ("--temperature=inf", "temperature"), ("--side_cache_max_gb=inf", "side_cache_max_gb"),
    ("--init_std=nan", "init_std"), ("--lora_alpha=inf", "lora_alpha"),
])
def test_nonfinite_float_values_are_refused(arg, key):
    with pytest.raises(SystemExit) as err:
        parse_args([arg])
    msg = str(err.value.code)
    assert msg.startswith(f"adapter4rec: config: {key}=") and "expected a finite number" in msg and "\n" not in msg
    if key.endswith("lr"):
        assert "> 0" in msg


def test_learning_rates_must_be_positive():
    for key in ("lr", "item_encoder_lr", "item_adapter_lr", "user_adapter_lr"):
        with pytest.raises(SystemExit, match=f"{key}=0.0 is invalid; expected a positive number"):
            parse_args([f"--{key}=0"])
    assert parse_args(["--lr=0.5", "--grad_clip=1e3"]).lr == 0.5  # finite values pass


@pytest.mark.parametrize("arg,want", [
    ("--lerning_rate=0.1", "--lr"), ("--learning_rate=0.1", "--lr"), ("--learning-rate", "--lr"),
    ("--bs=8", "--batch_size"), ("--batch=8", "--batch_size"), ("--epoch=2", "--epochs"),
    ("--wd=0.1", "--weight_decay"), ("--seq_len=5", "--max_seq_len"), ("--maxlen=5", "--max_seq_len"),
    ("--hidden=8", "--embedding_dim"), ("--d_model=8", "--embedding_dim"), ("--layers=1", "--num_blocks"),
    ("--heads=1", "--num_heads"), ("--embeding-dim=8", "--embedding-dim"), ("--Epochs=2", "--epochs"),
    ("--lr_shedule=cosine", "--lr_schedule"), ("--fine_tune_lr=1e-5", "--item_encoder_lr"),
    ("--no_progress", "--progress=false"), ("--warmup=5", "--warmup_steps"),
])
def test_unknown_key_suggests_by_edit_distance_and_common_names(arg, want):
    with pytest.raises(SystemExit) as err:
        parse_args([arg])
    msg = str(err.value.code)
    assert msg.startswith(f"adapter4rec: unknown argument(s): {arg!r} (did you mean {want}?")
    assert "learn_temperature" not in msg


@pytest.mark.parametrize("arg", ["--zzzz=1", "--x=1", "--side=1", "--foo_bar_baz=2"])
def test_unknown_key_far_from_every_key_gets_no_suggestion(arg):
    with pytest.raises(SystemExit) as err:
        parse_args([arg])
    assert str(err.value.code) == f"adapter4rec: unknown argument(s): {arg!r}"


def test_edit_distance_and_aliases():
    import dataclasses

    from adapter4rec.config import Config
    from adapter4rec.config.flags import ALIASES, edit_distance
    assert [edit_distance(a, b) for a, b in [("kitten", "sitting"), ("abcd", "acbd"), ("", "ab"), ("lr", "lr")]] == \
        [3, 1, 2, 0]
    keys = {f.name for f in dataclasses.fields(Config)}
    assert not set(ALIASES) & keys and {k for names in ALIASES.values() for k in names} <= keys


def _tiny_model(head: bool = True):
    import torch.nn as nn
    model = nn.Module()
    model.item_encoder = nn.Module()
    model.item_encoder.backbone = nn.Linear(2, 2, bias=False)
    if head:
        model.item_encoder.proj = nn.Linear(2, 2, bias=False)
    model.user_encoder = nn.Linear(2, 2, bias=False)
    return model


def test_peft_with_nothing_trainable_names_the_settings(capsys, monkeypatch):
    from adapter4rec.adapters.trainable import set_trainable
    from adapter4rec.config import Config
    from adapter4rec.errors import exit_on_user_error
    cfg = Config(stage="downstream", tune="peft")
    with pytest.raises(SystemExit) as err:
        set_trainable(_tiny_model(), cfg)
    msg = str(err.value.code)
    assert msg.startswith("adapter4rec: config: tune=peft with adapter=none, train_head=false, "
                          "train_user_encoder=false, tune_layernorm=false, tune_bias=false") and "\n" not in msg
    assert "leaves no parameter to train" in msg and "train_head=true" in msg and "tune=all" in msg
    # the entry points print it as one line with status 2
    for key in ("A4R_DEBUG", "RANK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as status:
        exit_on_user_error(lambda: set_trainable(_tiny_model(), cfg))
    lines = capsys.readouterr().err.splitlines()
    assert status.value.code == 2 and lines[0] == msg and "Traceback" not in "".join(lines)
    # an ID item tower has no head: train_head alone trains nothing either, and the message says why
    with pytest.raises(SystemExit, match=r"item_tower=id has no projection head"):
        set_trainable(_tiny_model(head=False), Config(stage="downstream", tune="peft", item_tower="id",
                                                      adapter_where="user", train_head=True))
    set_trainable(_tiny_model(), Config(stage="downstream", tune="peft", train_head=True))  # something trains: ok


def test_checkpoint_path_that_is_a_run_folder(tmp_path):
    from adapter4rec.checkpoint import CheckpointError, read_checkpoint
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path)
    msg = str(err.value)
    assert f"{tmp_path} is a folder" in msg and "holds no best.pt" in msg and "does not exist" not in msg
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"is a folder, not a checkpoint file; give the file inside it: "
                                              f"{tmp_path / 'best.pt'}"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("content", ["random", "truncated", "empty"])
def test_unreadable_checkpoint_is_one_short_line(tmp_path, content):
    import random

    import torch

    from adapter4rec.checkpoint import CheckpointError, read_checkpoint
    path = tmp_path / "best.pt"
    torch.save({"w": torch.zeros(256)}, path)
    data = {"random": random.Random(0).randbytes(4096), "truncated": path.read_bytes()[:600], "empty": b""}[content]
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "\n" not in msg and len(msg) < 300 + len(str(path))
    assert "weights_only" not in msg and "arbitrary code" not in msg
    assert content != "empty" or "(EOFError: the file is empty)" in msg


def test_settings_that_would_be_ignored_are_refused():
    """A setting that acts only on fused, MoE or pool runs is refused elsewhere instead of silently ignored."""
    from adapter4rec.config import parse_args
    for arg, message in (("--id_dropout=0.2", "id_dropout=0.2 is invalid; expected the default (0.0) unless "
                                                "item_tower=fused"),
                         ("--item_fusion=gate", "item_fusion='gate' is invalid"),
                         ("--head_experts=4", "head_experts=4 is invalid; expected the default (8) unless item_head=moe"),
                         ("--domain_sampling=smoothed", "unless dataset is a pool"),
                         ("--mixed_negatives=true", "unless dataset is a pool")):
        with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_args([arg])
    parse_args(["--id_dropout=0.2", "--item_tower=fused"])
    parse_args(["--head_experts=4", "--item_head=moe"])
    parse_args(["--dataset=a,b", "--domain_sampling=smoothed", "--mixed_negatives=true"])


def test_title_budgets_below_three_tokens_and_cold_shares_that_hold_out_nothing_are_refused(tiny_bert, tiny_data,
                                                                                         tmp_path):
    from adapter4rec.config import parse_args
    from adapter4rec.data.files import DataError
    from adapter4rec.training.build import load_data
    from tests.conftest import tiny_args
    for tokens in (1, 2):
        with pytest.raises(SystemExit, match=f"max_title_tokens={tokens} is invalid; expected at least 3"):
            parse_args([f"--max_title_tokens={tokens}"])
    for share, held in ((0.001, 0), (0.999, 192)):  # the tiny source domain has 192 items
        cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, cold_items=share))
        with pytest.raises(DataError, match=f"cold_items={share}: of the 192 items this holds out {held}"):
            load_data(cfg)
