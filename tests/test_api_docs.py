"""The Python API: docs/api.md's examples run as written (on the tiny data, with a tiny BERT added to every fit),
and a finished run loaded through it gives exactly the recommendations the recommend CLI writes."""
from __future__ import annotations

import re

import pytest

import adapter4rec
import adapter4rec.training.train as train
from adapter4rec.config import REPO_ROOT
from adapter4rec.data.files import DataError, read_users
from adapter4rec.serving.recommend import recommend

TINY = dict(batch_size=16, max_seq_len=8, embedding_dim=16, progress=False, max_title_tokens=16)


def tiny_settings(tiny_bert, out) -> dict:
    return dict(TINY, item_encoder=str(tiny_bert), output_dir=str(out / "runs"), cache_dir=str(out / "cache"))


def test_the_api_page_examples_run_as_written(tiny_bert, tiny_data, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    real_fit = train.fit
    datasets = {"Dataset/default/target": str(tiny_data / "target"), "Dataset/default/source": str(tiny_data /
                                                                                                     "source")}

    def tiny_fit(**settings):  # the page's settings, over the tiny model and data
        settings["dataset"] = datasets[settings["dataset"]]
        return real_fit(**{**settings, **tiny_settings(tiny_bert, tmp_path)})
    monkeypatch.setattr(train, "fit", tiny_fit)
    monkeypatch.chdir(tmp_path)  # "runs/api-demo" is the run the first block wrote
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/api.md python block {number}", "exec"), namespace)
    assert (tmp_path / "runs" / "api-demo" / "results.json").is_file()


@pytest.fixture(scope="module")
def finished(tiny_bert, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    adapter4rec.fit(stage="downstream", dataset=str(tiny_data / "target"), run_name="r", epochs=1,
                    loss="softmax", **tiny_settings(tiny_bert, out))
    return out / "runs" / "r"


def test_load_run_recommends_exactly_what_the_cli_writes(finished, tmp_path):
    recommend(finished, None, 7, tmp_path / "cli.tsv")
    header, *lines = (tmp_path / "cli.tsv").read_text().splitlines()
    assert header.split("\t") == ["user", "rank", "item", "title", "score"]
    cli = [line.split("\t") for line in lines]
    run = adapter4rec.load_run(finished)
    cfg = run.config
    users = read_users(cfg.resolve(cfg.dataset) / cfg.users_file, run.data.catalog.index, 1, cfg.unknown_items)
    histories = {user: [run.items[row - 1] for row in seq] for user, seq in zip(users.user_ids, users.sequences)}
    recs = run.recommend(histories, k=7)
    assert len(recs) == len(cli) > 0
    for row, (user, rank, item, title, score) in zip(recs.itertuples(index=False), cli):
        assert (row.user, row.rank, row.item, row.title) == (user, int(rank), item, title)
        assert f"{row.score:.6g}" == score
        assert row.title == run.data.catalog.titles[run.data.catalog.index[item] - 1]


def test_the_api_refuses_bad_input_with_the_key_or_item_named(finished):
    run = adapter4rec.load_run(finished)
    with pytest.raises(DataError, match="'no-such-item' is not in the run's items file"):
        run.recommend({"u": ["no-such-item"]})
    dropped = run.recommend({"u": ["no-such-item"], "v": run.items[:2]}, k=3, unknown_items="drop")
    assert set(dropped["user"]) == {"v"} and dropped.attrs["users_without_known_items"] == 1
    with pytest.raises(ValueError, match="k=0"):
        run.recommend({"v": run.items[:2]}, k=0)
    with pytest.raises(DataError, match="already in the run's items file"):
        run.embed_items({run.items[0]: "a title"})
    with pytest.raises(TypeError, match="epoch.*did you mean --epochs"):
        adapter4rec.fit(epoch=3)
    with pytest.raises(ValueError, match="dropout"):
        adapter4rec.fit(dropout=1.5)
