"""Items the run never saw, given only their text: embedded by the content path exactly as a catalogue item with
the same text and no trained ID (a cold item of a fused side-network run, whose catalogue rows come from the
cached layer states), ranked by recommend --new_items, and refused where no text path exists."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import adapter4rec.training.train as train
from adapter4rec.config import parse_args
from adapter4rec.data.files import DataError
from adapter4rec.data.text import build_token_table
from adapter4rec.models.pretrained import checkpoint_dir, load_tokenizer
from adapter4rec.serving.new_items import read_new_items
from adapter4rec.serving.recommend import recommend
from adapter4rec.training.assemble import rebuild_run
from tests.conftest import tiny_args

FAST = dict(stage="downstream", epochs=1, max_steps_per_epoch=3, loss="softmax", precision="fp32")


@pytest.fixture(scope="module")
def fused_run(tiny_bert, tiny_data, tmp_path_factory):
    """A fused (ID + text) side-network run with 30% of the items held out of training (cold)."""
    out = tmp_path_factory.mktemp("new_items")
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", out, run_name="fused", item_tower="fused",
                                   tune="peft", adapter="side", side_layers="1", train_head="true", cold_items=0.3,
                                   **FAST)))
    return out / "fused"


def copies_of(data, items: list[int], path) -> list[str]:
    """Write the texts of catalogue `items` under new ids into an items file; returns the new ids."""
    ids = [f"new-{item}" for item in items]
    lines = [f"{new}\t{data.catalog.titles[item - 1]}\n" for new, item in zip(ids, items)]
    path.write_text("".join(lines), encoding="utf-8")
    return ids


def test_a_new_item_is_embedded_as_a_catalogue_item_with_its_text_and_no_trained_id(fused_run, tmp_path):
    model, data, cfg, _ = rebuild_run(fused_run, cache=True)
    assert model.item_encoder.side.table is not None  # catalogue rows from the cache, new rows live
    cold = torch.nonzero(data.split.window_counts[1:] == 0).squeeze(1)[:4] + 1
    warm = torch.nonzero(data.split.window_counts[1:] > 0).squeeze(1)[:4] + 1
    items = cold.tolist() + warm.tolist()
    copies_of(data, items, tmp_path / "new.tsv")
    new = read_new_items(tmp_path / "new.tsv", data.catalog)
    tokens = build_token_table(new, load_tokenizer(checkpoint_dir(cfg)), cfg.text_field_list(), cfg.max_title_tokens)
    rows = model.item_encoder.encode_texts(tokens)
    with torch.no_grad():
        table = model.item_table()
    torch.testing.assert_close(rows[:len(cold)], table[cold], rtol=1e-4, atol=1e-5)  # cold: text alone, both
    assert not torch.allclose(rows[len(cold):], table[warm], atol=1e-3)  # trained items also carry their ID
    assert model.item_encoder.side.table is not None and model.item_encoder.id_fusion is not None  # restored


def test_recommend_ranks_new_items_with_the_catalogue_or_alone(fused_run, tmp_path, capsys):
    data = rebuild_run(fused_run)[1]
    new_ids = copies_of(data, list(range(1, 6)), tmp_path / "new.tsv")
    written = recommend(fused_run, None, 5, tmp_path / "alone.tsv", new_items=tmp_path / "new.tsv", only_new=True)
    assert written.new_items == 5 and "5 new items" in written.summary(tmp_path / "alone.tsv", 5)
    ranked = [line.split("\t")[2] for line in (tmp_path / "alone.tsv").read_text().splitlines()[1:]]
    assert len(ranked) == 5 * written.ranked and set(ranked) == set(new_ids)
    recommend(fused_run, None, len(data.catalog) + 5, tmp_path / "all.tsv", new_items=tmp_path / "new.tsv")
    lists = {}
    for line in (tmp_path / "all.tsv").read_text().splitlines()[1:]:
        user, _, item, _, score = line.split("\t")
        lists.setdefault(user, {})[item] = float(score)
    assert all(set(new_ids) <= set(scores) for scores in lists.values())  # never in a history: always ranked
    assert any(set(scores) - set(new_ids) for scores in lists.values())


def test_new_items_are_refused_where_they_cannot_be_embedded_or_are_not_new(fused_run, tiny_bert, tiny_data,
                                                                          tmp_path):
    data = rebuild_run(fused_run)[1]
    (tmp_path / "new.tsv").write_text(f"brand-new\tsome title\n{data.catalog.ids[2]}\tanother title\n")
    with pytest.raises(DataError, match=r"new\.tsv:2: item .* already in the run's items file"):
        read_new_items(tmp_path / "new.tsv", data.catalog)
    with pytest.raises(SystemExit, match="give --new_items"):
        recommend(fused_run, None, 5, tmp_path / "r.tsv", only_new=True)
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, run_name="ids", item_tower="id",
                                   **FAST)))
    (tmp_path / "new.tsv").write_text("brand-new\tsome title\n")
    with pytest.raises(SystemExit, match="item_tower=id"):
        recommend(tmp_path / "ids", None, 5, tmp_path / "r.tsv", new_items=tmp_path / "new.tsv")


def test_new_items_are_refused_before_the_model_data_or_caches_are_built(fused_run, tmp_path, monkeypatch):
    # the refusal reads the run's config alone: an image run must not decode its pixels and build its state
    # cache first (the check ran after the rebuild)
    import adapter4rec.training.assemble as assemble
    from adapter4rec.serving.new_items import check_run_can_embed

    def built(*_args, **_kwargs):
        raise AssertionError("the model was built before the refusal")
    monkeypatch.setattr(assemble, "build_run", built)
    monkeypatch.setattr("adapter4rec.serving.recommend.check_run_can_embed", lambda cfg, path: check_run_can_embed(
        dataclasses.replace(cfg, modality="image"), path))  # the fused text run, read as an image run
    (tmp_path / "new.tsv").write_text("brand-new\tsome title\n")
    with pytest.raises(SystemExit, match="encodes images"):
        recommend(fused_run, None, 5, tmp_path / "r.tsv", new_items=tmp_path / "new.tsv")
