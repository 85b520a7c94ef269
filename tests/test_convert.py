"""Dataset converters (adapter4rec.data.prepare, Dataset/convert.py): exact outputs on hand-written fixtures
for every format, each drop reason counted, clear errors, and the real data sets in shared/datasets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adapter4rec.data.prepare.convert import clean_text, join_text, write_dataset
from adapter4rec.data.prepare.formats import (read_interactions_csv, read_minionerec, read_recbole_atomic,
                                              read_recbole_split)
from adapter4rec.data.files import DataError, read_items, read_users

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _out(folder: Path) -> tuple[str, str]:
    return (folder / "users.tsv").read_text(encoding="utf-8"), (folder / "items.tsv").read_text(encoding="utf-8")


def _load(folder: Path, min_len: int = 5):
    """The written files through the project's own readers (unknown items are an error)."""
    items = read_items(folder / "items.tsv")
    return items, read_users(folder / "users.tsv", items.index, min_seq_len=min_len, unknown_items="error")


# ------------------------------------------------------------------------------------------------ text
def test_clean_and_join_text():
    assert clean_text("a\tb\nc  d\r\n\u00a0e ") == "a b c d e"
    assert join_text(["Pen", "", "  ", "Office\tSupplies"]) == "Pen. Office Supplies"


# ------------------------------------------------------------------------------------- recbole-atomic
ATOMIC_ITEM = ("item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\n"
               "i1\tPen\tOffice  Supplies\tBIC\n"
               "i2\tPaper\t\tHammermill\n"
               "i3\t\t\t\n"                      # no text at all
               "i4\tTape\tOffice\n"              # short line: the missing brand is empty
               "i1\tPen again\t\t\n"             # duplicate: the first text wins
               "i 5\tBad id\t\t\n"               # malformed: whitespace in the id
               "i6\tUnused\t\t\n")
ATOMIC_INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                "u1\ti2\t5\t20\n"
                "u1\ti1\t4\t10\n"
                "u1\ti4\t3\t30\n"
                "u1\ti1\t3\t30\n"                # tie with the line above: file order kept
                "u1\ti3\t2\t40\n"                # item without text
                "u2\ti1\t1\tabc\n"               # malformed timestamp
                "u2\ti2\t1\n"                    # malformed: too few fields
                "u1\ti2\t1\t50\n"
                "u2\ti1\t1\t5\n"
                "u2\ti9\t1\t6\n"                 # item not in the item file
                "u3\ti2\t1\t1\n"
                "u3\ti4\t1\t2\n"
                "u4\ti4\t1\t1\n"
                "u4\ti4\t1\t2\n"
                "u4\ti2\t1\t3\n")


def _atomic(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "Toy.inter", ATOMIC_INTER), _write(tmp_path / "Toy.item", ATOMIC_ITEM)


def test_recbole_atomic_exact_output_and_drops(tmp_path):
    inter, item = _atomic(tmp_path)
    conv = read_recbole_atomic(inter, item)
    assert conv.sequences["u1"] == ["i1", "i2", "i4", "i1", "i3", "i2"]
    assert conv.report["dropped"] == {"duplicate_item_rows": 1, "malformed_lines": 3}
    examples = conv.report["malformed_examples"]
    assert examples[0].startswith(f"{item}:7: item id 'i 5'")
    assert examples[1].startswith(f"{inter}:7: timestamp 'abc'") and examples[2].startswith(f"{inter}:8: ")
    written = write_dataset(tmp_path / "out", conv.sequences, conv.titles, min_len=3)
    users, items = _out(tmp_path / "out")
    assert users == "u1\ti1 i2 i4 i1 i2\nu4\ti4 i4 i2\n"
    assert items == "i1\tPen. Office Supplies. BIC\ni2\tPaper. Hammermill\ni4\tTape. Office\n"
    assert written["dropped"] == {"interactions_dropped_no_text": 2, "interactions_dropped_short_users": 3,
                                  "items_unused_not_written": 1, "items_without_text_dropped": 2,
                                  "users_dropped_too_short": 2}
    assert (written["users_in"], written["users_written"], written["items_written"],
            written["interactions_written"]) == (4, 2, 3, 8)
    assert written["users_with_repeated_items"] == 2 and written["users_with_consecutive_repeats"] == 1
    assert written["interactions_in"] == 13
    _, data = _load(tmp_path / "out", min_len=3)
    assert data.user_ids == ["u1", "u4"]


def test_recbole_atomic_text_fields_and_missing_columns(tmp_path):
    inter, item = _atomic(tmp_path)
    conv = read_recbole_atomic(inter, item, text_fields=["title", "brand"])
    assert conv.titles["i1"] == "Pen. BIC" and conv.titles["i4"] == "Tape"
    with pytest.raises(DataError, match=r"Toy\.item: required column 'color'"):
        read_recbole_atomic(inter, item, text_fields=["color"])
    no_time = _write(tmp_path / "NoTime.inter", "user_id:token\titem_id:token\nu1\ti1\n")
    with pytest.raises(DataError, match=r"NoTime\.inter: required column 'timestamp'"):
        read_recbole_atomic(no_time, item)
    with pytest.raises(DataError, match=r"Missing\.inter: file not found"):
        read_recbole_atomic(tmp_path / "Missing.inter", item)


# -------------------------------------------------------------------------------------- recbole-split
def _split(folder: Path) -> Path:
    _write(folder / "Toy.item2index", "A1\t0\nA2\t1\nA3\t2\nA4\t3\n")
    _write(folder / "Toy.user2index", "U1\t0\nU2\t1\nU3\t2\nU4\t3\n")
    _write(folder / "Toy.text", "item_id:token\ttext:token_seq\n"
           "A1\tAlpha. Cat. Brand. \nA2\tBeta\twith a stray tab\nA3\tGamma\nA1\tAlpha again\n")
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    _write(folder / "Toy.test.inter", header + "0\t0 1 2 1\t0\n"
           "9\t0 1 2\t1\n"        # user index not in user2index
           "0\t0 1\t2\n"          # second test row of user 0
           "2\t0 7 1\t2\n"        # item index 7 not in item2index
           "3\n")                 # malformed
    _write(folder / "Toy.valid.inter", header + "0\t0 1 2\t1\n1\t2 1 0\t3\n")  # U2 only here; A4 has no text
    _write(folder / "Toy.train.inter", header + "0\t0\t1\n")
    return folder


def test_recbole_split_exact_output_and_drops(tmp_path):
    folder = _split(tmp_path / "in")
    _write(folder / "Toy.user2index", "U1\t0\nU2\t1\nU3\t2\nU4\t3\nU1\t4\n")  # U1 twice, as 0 and 4
    _write(folder / "Toy.valid.inter", (folder / "Toy.valid.inter").read_text() + "4\t0\t1\n")
    conv = read_recbole_split(folder, "Toy")
    assert conv.sequences == {"U1": ["A1", "A2", "A3", "A2", "A1"], "U3": ["A1", "A2", "A3"],
                              "U2": ["A3", "A2", "A1", "A4"]}
    assert conv.report["dropped"] == {"duplicate_item_rows": 1, "duplicate_user_rows": 1,
                                      "interactions_unknown_item_index": 1, "malformed_lines": 1,
                                      "users_duplicate_raw_id": 1, "users_unknown_index": 1}
    assert conv.report["noted"] == {"users_from_valid_row": 1, "users_in_user2index_without_test_or_valid_row": 1}
    assert conv.report["malformed_examples"] == [f"{tmp_path / 'in' / 'Toy.test.inter'}:6: missing user_id or item_id"]
    written = write_dataset(tmp_path / "out", conv.sequences, conv.titles, min_len=3)
    users, items = _out(tmp_path / "out")
    assert users == "U1\tA1 A2 A3 A2 A1\nU2\tA3 A2 A1\nU3\tA1 A2 A3\n"
    assert items == "A1\tAlpha. Cat. Brand.\nA2\tBeta with a stray tab\nA3\tGamma\n"
    assert written["dropped"]["interactions_dropped_no_text"] == 1
    assert written["dropped"]["items_without_text_dropped"] == 1
    _load(tmp_path / "out", min_len=3)


def test_recbole_split_missing_file_and_column(tmp_path):
    folder = _split(tmp_path / "in")
    (folder / "Toy.user2index").unlink()
    with pytest.raises(DataError, match=r"Toy\.user2index: file not found"):
        read_recbole_split(folder, "Toy")
    _split(folder)
    _write(folder / "Toy.text", "item:token\ttext:token_seq\nA1\tAlpha\n")
    with pytest.raises(DataError, match=r"Toy\.text: required column 'item_id'"):
        read_recbole_split(folder, "Toy")


# ------------------------------------------------------------------------------------------------- csv
CSV_ITEMS = ('iid,name,brand\n'
             'p1,"Pens, ""blue""\nfine",BIC\n'   # quoting: a comma, quotes and a line break inside a field
             'p2,Paper,\n'
             'p3,,\n'                            # no text
             'p2,Other paper,\n')                # duplicate
CSV_INTER = ('uid,iid,when\n'
             'x,p2,2021-01-02T00:00:00\n'
             'x,p1,2021-01-01\n'
             'x,p3,2021-01-03\n'
             'x,p1,2021-01-04T00:00:00+00:00\n'
             'y,p1,1\n'
             'y,,2\n'                             # empty item id
             'y,p2,soon\n'                        # bad timestamp
             'y,p2,3,extra\n'                     # too many fields
             'y,p2,4\n'
             'y,p2,5\n')


def test_csv_exact_output_and_drops(tmp_path):
    inter, items = _write(tmp_path / "inter.csv", CSV_INTER), _write(tmp_path / "items.csv", CSV_ITEMS)
    conv = read_interactions_csv(inter, items, user_col="uid", item_col="iid", time_col="when",
                                 item_id_col="iid", title_col="name")
    assert conv.sequences == {"x": ["p1", "p2", "p3", "p1"], "y": ["p1", "p2", "p2"]}
    assert conv.titles == {"p1": 'Pens, "blue" fine', "p2": "Paper", "p3": ""}
    assert conv.report["dropped"] == {"duplicate_item_rows": 1, "malformed_lines": 3}
    assert [e.split(": ")[0] for e in conv.report["malformed_examples"]] == [f"{inter}:{n}" for n in (7, 8, 9)]
    written = write_dataset(tmp_path / "out", conv.sequences, conv.titles, min_len=3)
    assert _out(tmp_path / "out") == ("x\tp1 p2 p1\ny\tp1 p2 p2\n", 'p1\tPens, "blue" fine\np2\tPaper\n')
    assert written["dropped"]["interactions_dropped_no_text"] == 1
    assert written["users_with_repeated_items"] == 2
    with_brand = read_interactions_csv(inter, items, "uid", "iid", "when", "iid", text_fields=["name", "brand"])
    assert with_brand.titles["p1"] == 'Pens, "blue" fine. BIC'
    file_order = read_interactions_csv(inter, items, "uid", "iid", "", "iid", "name")
    assert file_order.sequences["x"] == ["p2", "p1", "p3", "p1"]


def test_csv_missing_column_names_file_and_column(tmp_path):
    inter, items = _write(tmp_path / "inter.csv", CSV_INTER), _write(tmp_path / "items.csv", CSV_ITEMS)
    with pytest.raises(DataError, match=r"items\.csv: required column 'title'"):
        read_interactions_csv(inter, items, "uid", "iid", "when", "iid")
    with pytest.raises(DataError, match=r"inter\.csv: required column 'timestamp'"):
        read_interactions_csv(inter, items, "uid", "iid", item_id_col="iid", title_col="name")


# ------------------------------------------------------------------------------------------ minionerec
MINI_HEADER = "user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid\n"


def _window(user: str, history: str, target: int) -> str:
    return f'{user},"[\'t\']",t,"{history}",{target},"[\'<a_1>\']",<a_1>\n'


def _mini(folder: Path) -> Path:
    _write(folder / "valid" / "Toy_5.csv", MINI_HEADER + _window("a", "[1, 2]", 3) + _window("c", "[8]", 1)
           + _window("a", "[1, 2, 3]", 4))
    _write(folder / "test" / "Toy_5.csv", MINI_HEADER + _window("b", "[7]", 8) + _window("a", "[1, 2, 3, 4]", 5)
           + _window("b", "[7, 8", 7)              # malformed history
           + _window("a", "[3, 4, 5]", 5)          # capped history: still the tail of the sequence
           + _window("a", "[9, 9]", 2)             # inconsistent with a's sequence
           + _window("b", "[7, 8]", 7) + _window("a", "[4, 5, 5]", 6))
    titles = {str(i): {"title": f"T{i}", "description": "<b>x</b>", "brand": "", "categories": ""}
              for i in range(1, 10)}
    titles["6"]["title"] = ""
    titles["8"]["brand"] = "Acme\tCo"
    _write(folder / "index" / "Toy.item.json", json.dumps({**titles, "x": "not an object"}))
    return folder


def test_minionerec_exact_output_and_drops(tmp_path):
    folder = _mini(tmp_path / "in")
    conv = read_minionerec(folder)
    assert conv.sequences == {"a": ["1", "2", "3", "4", "5", "5", "6"], "b": ["7", "8", "7"], "c": ["8", "1"]}
    assert conv.report["dropped"] == {"inconsistent_windows": 1, "malformed_lines": 2}
    assert conv.report["noted"] == {"rows_test": 7, "rows_valid": 3}
    json_file = folder / "index" / "Toy.item.json"
    assert conv.report["malformed_examples"][0] == f"{json_file}: item 'x': entry is not an object"
    assert conv.report["malformed_examples"][1].startswith(f"{folder / 'test' / 'Toy_5.csv'}:4: history_item_id")
    written = write_dataset(tmp_path / "out", conv.sequences, conv.titles, min_len=3)
    users, items = _out(tmp_path / "out")
    assert users == "a\t1 2 3 4 5 5\nb\t7 8 7\n"
    assert items == "".join(f"{i}\tT{i}\n" for i in (1, 2, 3, 4, 5, 7, 8))
    assert written["dropped"] == {"interactions_dropped_no_text": 1, "interactions_dropped_short_users": 2,
                                  "items_unused_not_written": 1, "items_without_text_dropped": 1,
                                  "users_dropped_too_short": 1}
    assert written["users_with_repeated_items"] == 2 and written["users_with_consecutive_repeats"] == 1
    assert read_minionerec(folder, ["title", "brand"]).titles["8"] == "T8. Acme Co"


def test_minionerec_missing_parts_fail_clearly(tmp_path):
    folder = _mini(tmp_path / "in")
    with pytest.raises(DataError, match=r"text field 'colour' is in no item"):
        read_minionerec(folder, ["colour"])
    _write(folder / "valid" / "Other.csv", MINI_HEADER)
    with pytest.raises(DataError, match=r"valid: expected exactly one \*\.csv file, found 2"):
        read_minionerec(folder)
    (folder / "valid" / "Other.csv").unlink()
    _write(folder / "test" / "Toy_5.csv", "user_id,history_item_title,item_id\n")
    with pytest.raises(DataError, match=r"Toy_5\.csv: required column 'history_item_id'"):
        read_minionerec(folder)


# --------------------------------------------------------------------------------------- writer and CLI
def test_write_dataset_is_deterministic_and_can_keep_unused_items(tmp_path):
    seqs = {"u2": ["b", "a", "b"], "u1": ["a", "c", "a"]}
    titles = {"c": "C", "a": "A\tx", "b": "B", "z": "Z"}
    write_dataset(tmp_path / "one", seqs, titles, min_len=3)
    write_dataset(tmp_path / "two", dict(reversed(seqs.items())), dict(reversed(titles.items())), min_len=3)
    assert _out(tmp_path / "one") == _out(tmp_path / "two") == ("u1\ta c a\nu2\tb a b\n", "a\tA x\nb\tB\nc\tC\n")
    report = write_dataset(tmp_path / "all", seqs, titles, min_len=3, keep_unused_items=True)
    assert report["items_written"] == 4 and _out(tmp_path / "all")[1].endswith("z\tZ\n")
    with pytest.raises(DataError, match="no user left"):
        write_dataset(tmp_path / "none", seqs, titles, min_len=4)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "Dataset" / "convert.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_files_and_report(tmp_path):
    folder, out = _mini(tmp_path / "in"), tmp_path / "out"
    done = _cli("minionerec", "--dir", str(folder), "--out", str(out), "--min_len", "3")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.loads((out / "convert_report.json").read_text(encoding="utf-8"))
    assert report["read"]["dropped"]["inconsistent_windows"] == 1 and report["write"]["users_written"] == 2
    assert _out(out)[0] == "a\t1 2 3 4 5 5\nb\t7 8 7\n"
    bad = _write(tmp_path / "items.csv", "item,name\np1,Pen\n")
    failed = _cli("csv", "--interactions_csv", str(bad), "--items_csv", str(bad), "--out", str(tmp_path / "x"))
    assert failed.returncode == 2 and f"{bad}: required column 'title'" in failed.stderr


# ------------------------------------------------------------------------------------------ real data
REAL = [  # SOURCE.md statistics of each folder; every user there already has >= 5 items
    ("Amazon_Scientific_UniSRec", lambda d: read_recbole_split(d, "Scientific"), 8442, 4385, 59384),
    ("Amazon_Office_MiniOneRec", read_minionerec, 3231, 3317, 22447),
    ("Amazon_Industrial_MiniOneRec", read_minionerec, 3285, 3541, 22743),
]


@pytest.mark.parametrize("name,reader,users,items,interactions", REAL, ids=[r[0] for r in REAL])
def test_real_dataset_converts_and_loads(tmp_path, name, reader, users, items, interactions):
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    conv = reader(folder)
    assert conv.report["dropped"] == {}
    written = write_dataset(tmp_path / name, conv.sequences, conv.titles, min_len=5)
    assert (written["users_written"], written["items_written"], written["interactions_written"]) == \
        (users, items, interactions)
    catalog, data = _load(tmp_path / name, min_len=5)
    assert len(catalog) == items and data.stats["users"] == users and data.stats["interactions"] == interactions
    assert data.stats["short_users_skipped"] == 0 and data.stats["duplicate_users"] == 0
