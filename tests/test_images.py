"""Image data: the LMDB store (our layout and the original pickled layout), building a store from a folder,
decoding to a per-item pixel table, the synthetic image generator, and reading image items files."""
from __future__ import annotations

import colorsys
import io
import json
import os
import pickle
import re
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from adapter4rec.data.files import DataError, read_item_names
from adapter4rec.data.images import ImageSpec, PixelTable, decode, decode_pixels, pixel_key, pixel_shape, to_rgb
from adapter4rec.data.lmdb_images import ImageEntryError, ImageLmdb, ImageStoreError, write_lmdb
from adapter4rec.data.prepare.image_folders import build_from_folder
from adapter4rec.data.store import DiskStore, key_digest
from adapter4rec.data.synthetic.images import N_TOPICS, SHAPES, draw_item, generate_images, topic_look

MAP = 16 << 20


# ---------------------------------------------------------------- helpers

def pattern(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def chw(array: np.ndarray) -> np.ndarray:
    return array.transpose(2, 0, 1)


def write_items(path: Path, names) -> Path:
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path


class LMDB_Image:  # noqa: N801 -- the original IDvs.MoRec class, as its builder pickled it
    def __init__(self, image: np.ndarray, id):  # noqa: A002
        self.channels = image.shape[2]
        self.size = image.shape[:2]
        self.image = image.tobytes()
        self.id = id


LMDB_Image.__module__ = "__main__"
LMDB_Image.__qualname__ = LMDB_Image.__name__ = "LMDB_Image"


@pytest.fixture
def original_pickle(monkeypatch):
    """`pickle.dumps(LMDB_Image(...))` works as in the original builder's `__main__`."""
    monkeypatch.setattr(sys.modules["__main__"], "LMDB_Image", LMDB_Image, raising=False)
    return LMDB_Image


def write_original(path: Path, values: dict[bytes, bytes], keys: list[bytes] | None = None,
                   with_len: bool = True) -> Path:
    """The original builder: lmdb.open(subdir=True), raw puts, then `__keys__` / `__len__`."""
    env = lmdb.open(str(path), subdir=True, map_size=MAP)
    keys = list(values) if keys is None else keys
    with env.begin(write=True) as txn:
        for key, value in values.items():
            txn.put(key, value)
        txn.put(b"__keys__", pickle.dumps(keys))
        if with_len:
            txn.put(b"__len__", pickle.dumps(len(keys)))
    env.sync()
    env.close()
    return path


def pickled_image(array: np.ndarray, ident, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps(LMDB_Image(array, ident), protocol=protocol)


class _Evil:
    """Unpickling this runs `os.system(command)`."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def table_of(store: Path, names, spec: ImageSpec, cache_dir: Path, missing: str = "error", **kwargs):
    """(the pixel table, its counts) as build.pixel_table makes them: a record of the item store in `cache_dir`."""
    names = list(names)
    cache, key = DiskStore(cache_dir), pixel_key(store, names, spec, missing)
    pixels = cache.get_or_build(key, pixel_shape(names, spec), "uint8",
                                lambda write: decode_pixels(store, names, spec, write, missing, **kwargs))
    return PixelTable(pixels, key_digest(key)), cache.report["facts"]


# ---------------------------------------------------------------- lmdb_images: our layout

def test_write_lmdb_round_trip_and_count(tmp_path):
    entries = {"a": b"\x89PNG first", "v12": b"second", "B0ABCDEFGH": b"", "\u00e9t\u00e9": b"x" * 3000}
    count = write_lmdb(tmp_path / "s.lmdb", iter(entries.items()), MAP)
    store = ImageLmdb(tmp_path / "s.lmdb")
    assert count == 4 and store.count() == 4
    assert store.layout == "adapter4rec"
    for name, data in entries.items():
        assert store.get(name) == data
    assert store.get("nope") is None
    assert not (tmp_path / "s.lmdb.partial").exists()


def test_our_layout_has_no_hm_int_key_fallback(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("12", b"int key")], MAP)
    store = ImageLmdb(tmp_path / "s.lmdb")
    assert store.get("v12") is None
    assert store.get("12") == b"int key"


def test_write_lmdb_replaces_existing_store(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("a", b"old"), ("b", b"old")], MAP)
    assert write_lmdb(tmp_path / "s.lmdb", [("a", b"new")], MAP) == 1
    store = ImageLmdb(tmp_path / "s.lmdb")
    assert (store.get("a"), store.get("b"), store.count()) == (b"new", None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lmdb"]


def test_write_lmdb_interrupted_keeps_old_store_and_no_partial(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("a", b"old")], MAP)

    def entries():
        yield "a", b"new"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_lmdb(tmp_path / "s.lmdb", entries(), MAP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lmdb"]
    assert ImageLmdb(tmp_path / "s.lmdb").get("a") == b"old"


def test_write_lmdb_refuses_metadata_key_name(tmp_path):
    with pytest.raises(ImageStoreError, match="__meta__"):
        write_lmdb(tmp_path / "s.lmdb", [("a", b"1"), ("__meta__", b"2")], MAP)
    assert list(tmp_path.iterdir()) == []


def test_missing_and_foreign_stores_are_refused(tmp_path):
    with pytest.raises(ImageStoreError, match="does not exist"):
        ImageLmdb(tmp_path / "absent.lmdb")
    env = lmdb.open(str(tmp_path / "other.lmdb"), map_size=MAP)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(ImageStoreError, match="not an image store"):
        ImageLmdb(tmp_path / "other.lmdb")
    env = lmdb.open(str(tmp_path / "future.lmdb"), map_size=MAP)
    with env.begin(write=True) as txn:
        txn.put(b"__meta__", json.dumps({"format": "adapter4rec-images/99", "count": 0}).encode())
    env.close()
    with pytest.raises(ImageStoreError, match="adapter4rec-images/99"):
        ImageLmdb(tmp_path / "future.lmdb")


def test_pickled_store_and_two_stores_of_one_path_work(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("a", b"A"), ("b", b"B")], MAP)
    store = ImageLmdb(tmp_path / "s.lmdb")
    assert store.get("a") == b"A"  # this process has an open environment now
    clone = pickle.loads(pickle.dumps(store))  # an lmdb.Environment cannot be pickled: none is held
    second = ImageLmdb(tmp_path / "s.lmdb")     # lmdb refuses a second open in one process: shared
    assert (clone.get("b"), clone.layout, clone.count(), second.get("a"), store.get("b")) == \
        (b"B", "adapter4rec", 2, b"A", b"B")


def test_rebuilt_store_is_read_fresh(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("a", b"old")], MAP)
    assert ImageLmdb(tmp_path / "s.lmdb").get("a") == b"old"
    write_lmdb(tmp_path / "s.lmdb", [("a", b"new")], MAP)
    assert ImageLmdb(tmp_path / "s.lmdb").get("a") == b"new"


def test_store_used_after_fork_reopens_in_child(tmp_path):
    write_lmdb(tmp_path / "s.lmdb", [("a", b"A")], MAP)
    store = ImageLmdb(tmp_path / "s.lmdb")
    assert store.get("a") == b"A"
    pid = os.fork()
    if pid == 0:  # child: the inherited handle must give way to the child's own
        try:
            os._exit(0 if store.get("a") == b"A" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("a") == b"A"  # the parent's handle still works


# ---------------------------------------------------------------- lmdb_images: the original layout

@pytest.mark.parametrize("protocol", [3, 4, 5])  # Python 3 builders: 3 (<= 3.7) or 4 (3.8+)
def test_original_layout_hm_int_keys_and_names(tmp_path, original_pickle, protocol):
    hm, amazon = pattern(5, 7, 1), pattern(3, 4, 2)
    path = write_original(tmp_path / "orig.lmdb", {
        b"27903": pickled_image(hm, 27903, protocol), b"B0059EIGJE": pickled_image(amazon, "B0059EIGJE", protocol)},
        keys=[b"27903", b"B0059EIGJE", b"555"])  # the original lists failed items in __keys__ too
    store = ImageLmdb(path)
    assert store.layout == "original"
    got = store.get("v27903")
    assert got.dtype == np.uint8 and got.shape == (5, 7, 3)
    np.testing.assert_array_equal(got, hm)
    np.testing.assert_array_equal(store.get("B0059EIGJE"), amazon)
    assert store.get("v555") is None and store.get("27904") is None
    assert store.count() == 3


def test_original_layout_count_from_keys_without_len(tmp_path, original_pickle):
    path = write_original(tmp_path / "orig.lmdb", {b"1": pickled_image(pattern(2, 2, 0), 1)},
                          keys=[b"1", b"2"], with_len=False)
    assert ImageLmdb(path).count() == 2


def test_original_layout_keys_for_hm_names_only(tmp_path, original_pickle):
    store = ImageLmdb(write_original(tmp_path / "o.lmdb", {b"7": pickled_image(pattern(1, 1, 0), 7)}))
    assert store.keys_for("v0007") == [b"v0007", b"7"]
    assert store.keys_for("vx7") == [b"vx7"]
    assert store.keys_for("B0059EIGJE") == [b"B0059EIGJE"]
    np.testing.assert_array_equal(store.get("v0007"), pattern(1, 1, 0))


@pytest.mark.parametrize("protocol", [0, 2, pickle.DEFAULT_PROTOCOL])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(f"touch {marker}"), protocol=protocol)
    path = write_original(tmp_path / "orig.lmdb", {b"1": evil})
    store = ImageLmdb(path)
    with pytest.raises(ImageStoreError, match=r"'v1'.*(system|UnpicklingError)"):
        store.get("v1")
    assert not marker.exists()


def test_original_entry_with_wrong_size_is_an_entry_error(tmp_path, original_pickle):
    damaged = LMDB_Image(pattern(4, 4, 0), 1)
    damaged.size = (5, 4)
    store = ImageLmdb(write_original(tmp_path / "o.lmdb", {b"1": pickle.dumps(damaged)}))
    with pytest.raises(ImageEntryError, match=r"'v1'.*ValueError"):
        store.get("v1")


def test_pickle_of_other_class_is_refused(tmp_path):
    value = pickle.dumps(io.BytesIO(b"not an image"))
    store = ImageLmdb(write_original(tmp_path / "o.lmdb", {b"B000000001": value}))
    with pytest.raises(ImageStoreError, match="B000000001"):
        store.get("B000000001")


def test_malicious_len_entry_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_original(tmp_path / "orig.lmdb", {}, keys=[])
    env = lmdb.open(str(path), map_size=MAP)
    with env.begin(write=True) as txn:
        txn.put(b"__len__", pickle.dumps(_Evil(f"touch {marker}")))
    env.close()
    with pytest.raises((ImageStoreError, pickle.UnpicklingError)):
        ImageLmdb(path).count()
    assert not marker.exists()


def test_malicious_entry_in_pixel_cache_counts_as_corrupt(tmp_path, original_pickle):
    marker = tmp_path / "pwned"
    path = write_original(tmp_path / "orig.lmdb", {b"1": pickled_image(pattern(4, 4, 0), 1),
                                                   b"2": pickle.dumps(_Evil(f"touch {marker}"))})
    spec = ImageSpec(4, 4)
    with pytest.raises(DataError, match=r"\bv2 \(ImageEntryError: .*(posix|nt)\.system"):
        table_of(path, ["v1", "v2"], spec, tmp_path / "c", "error")
    table, report = table_of(path, ["v1", "v2"], spec, tmp_path / "c", "blank")
    assert report["missing"] == [] and [c.split(" ")[0] for c in report["corrupt"]] == ["v2"]
    np.testing.assert_array_equal(table.array[2], spec.blank())
    np.testing.assert_array_equal(table.array[1], chw(pattern(4, 4, 0)))
    assert not marker.exists()


# ---------------------------------------------------------------- files.read_item_names

def test_read_item_names_columns_duplicates_crlf(tmp_path):
    path = tmp_path / "items.tsv"
    path.write_bytes(b"\xef\xbb\xbfv1\tignored\tcolumns\r\nB0AAAAAAAA\r\n\r\nv1\tother\r\n  \nv2\nB0AAAAAAAA\n")
    catalog = read_item_names(path)
    assert catalog.ids == ["v1", "B0AAAAAAAA", "v2"]
    assert catalog.index == {"v1": 1, "B0AAAAAAAA": 2, "v2": 3}
    assert catalog.duplicates_skipped == 2
    assert len(catalog) == 3 and catalog.titles == ["", "", ""]


@pytest.mark.parametrize("content", [b"", b"\n\r\n  \n"])
def test_read_item_names_empty_file(tmp_path, content):
    (tmp_path / "items.tsv").write_bytes(content)
    with pytest.raises(DataError, match="no items"):
        read_item_names(tmp_path / "items.tsv")


def test_read_item_names_bad_lines(tmp_path):
    (tmp_path / "items.tsv").write_bytes(b"v1\n\tno id\n")
    with pytest.raises(DataError, match=r"items.tsv:2: empty item id"):
        read_item_names(tmp_path / "items.tsv")
    with pytest.raises(DataError, match="file not found"):
        read_item_names(tmp_path / "absent.tsv")


# ---------------------------------------------------------------- images.decode / to_rgb

def test_to_rgb_grayscale():
    gray = pattern(3, 5, 0, channels=1)
    image, converted = to_rgb(Image.fromarray(gray, "L"))
    assert converted == "L" and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), np.repeat(gray[:, :, None], 3, axis=2))
    rgb = Image.fromarray(pattern(2, 2, 1))
    assert to_rgb(rgb) == (rgb, None)


def test_to_rgb_rgba_composites_over_white():
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    image, converted = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert converted == "RGBA" and image.mode == "RGB"
    got = np.asarray(image).astype(int)
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])  # fully transparent -> white, not (10, 20, 30)
    np.testing.assert_array_equal(got[0, 1], [10, 20, 30])
    assert np.all(np.abs(got[0, 2] - 127) <= 1)  # half-transparent black over white -> mid grey


def test_to_rgb_palette_with_and_without_transparency():
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    image = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), "P")
    image.putpalette(palette)
    rgb, converted = to_rgb(image)
    assert converted == "P"
    np.testing.assert_array_equal(np.asarray(rgb), [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]])
    # the same palette image saved as PNG with index 1 transparent: that pixel becomes white
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=1)
    pixels, converted, upscaled = decode(buffer.getvalue(), ImageSpec(1, 3))
    assert (converted, upscaled) == ("P", False)
    np.testing.assert_array_equal(pixels, chw(np.array([[[255, 0, 0], [255, 255, 255], [0, 0, 255]]], np.uint8)))


def test_decode_same_size_png_is_exact_and_not_resized():
    array = pattern(6, 9, 3)
    pixels, converted, upscaled = decode(encode(array), ImageSpec(6, 9))
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 6, 9)
    assert (converted, upscaled) == (None, False)
    np.testing.assert_array_equal(pixels, chw(array))


def test_decode_tiny_image_is_upscaled():
    pixels, converted, upscaled = decode(encode(np.array([[[200, 100, 50]]], np.uint8)), ImageSpec(8, 8))
    assert upscaled is True and converted is None and pixels.shape == (3, 8, 8)
    np.testing.assert_array_equal(pixels, np.broadcast_to(np.array([200, 100, 50], np.uint8)[:, None, None],
                                                          (3, 8, 8)))


@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
def test_decode_large_image_resized_to_spec(resample):
    array = pattern(40, 60, 4)  # H=40, W=60
    spec = ImageSpec(height=8, width=12, resample=int(resample))
    pixels, converted, upscaled = decode(encode(array), spec)
    assert pixels.shape == (3, 8, 12) and upscaled is False and converted is None
    expected = np.asarray(Image.fromarray(array).resize((12, 8), resample=resample))
    np.testing.assert_array_equal(pixels, chw(expected))


def test_decode_one_side_smaller_counts_as_upscaled():
    _, _, upscaled = decode(encode(pattern(4, 40, 0)), ImageSpec(8, 8))
    assert upscaled is True


def test_decode_arrays_rgb_and_gray():
    rgb = pattern(5, 4, 7)
    pixels, converted, upscaled = decode(rgb, ImageSpec(5, 4))
    assert (converted, upscaled) == (None, False)
    np.testing.assert_array_equal(pixels, chw(rgb))
    gray = pattern(5, 4, 8, channels=1)
    for value in (gray, gray[:, :, None]):
        pixels, converted, _ = decode(value, ImageSpec(5, 4))
        assert converted == "L"
        np.testing.assert_array_equal(pixels, np.broadcast_to(gray, (3, 5, 4)))


@pytest.mark.parametrize("data", [b"", b"not an image at all", encode(pattern(16, 16, 0))[:60]])
def test_decode_undecodable_raises(data):
    with pytest.raises((OSError, ValueError, SyntaxError)):
        decode(data, ImageSpec(4, 4))


def test_blank_is_mean_colour():
    blank = ImageSpec(2, 3, mean=(0.485, 0.456, 0.406)).blank()
    assert blank.shape == (3, 2, 3) and blank.dtype == np.uint8 and blank.flags.writeable
    np.testing.assert_array_equal(blank[:, 0, 0], [124, 116, 104])
    assert all(len(np.unique(blank[c])) == 1 for c in range(3))
    assert np.all(ImageSpec(1, 1).blank() == 128)


# ---------------------------------------------------------------- build_from_folder -> pixel table

@pytest.fixture
def folder_store(tmp_path):
    """A folder with PNG/JPEG/uppercase-extension images, a missing one and two corrupt ones -> LMDB."""
    folder = tmp_path / "images"
    folder.mkdir()
    arrays = {"v101": pattern(6, 8, 1), "B0AAAAAAAA": pattern(6, 8, 2), "v103": pattern(6, 8, 3),
              "v104": pattern(6, 8, 4)}
    (folder / "v101.png").write_bytes(encode(arrays["v101"]))
    (folder / "B0AAAAAAAA.jpg").write_bytes(encode(arrays["B0AAAAAAAA"], "JPEG", quality=90))
    (folder / "v103.PNG").write_bytes(encode(arrays["v103"]))
    (folder / "v104.jpeg").write_bytes(encode(arrays["v104"], "JPEG", quality=75))
    (folder / "truncated.png").write_bytes(encode(pattern(64, 64, 5))[:400])
    (folder / "noise.jpg").write_bytes(np.random.default_rng(6).bytes(500))
    names = ["v101", "B0AAAAAAAA", "ghost", "truncated", "v103", "noise", "v104"]
    items = write_items(tmp_path / "items.tsv", names)
    report = build_from_folder(items, folder, tmp_path / "store.lmdb")
    return folder, names, arrays, report, tmp_path / "store.lmdb"


def test_build_from_folder_report_and_bad_list(folder_store):
    folder, names, arrays, report, store_path = folder_store
    sizes = sum(len(p.read_bytes()) for p in folder.iterdir() if p.stem in arrays)
    bad_file = store_path.with_name("store.lmdb.bad.tsv")
    assert report == {"items": 7, "stored": 4, "bytes": sizes, "missing": 1, "corrupt": 2,
                      "bad_list": str(bad_file)}
    rows = [line.split("\t") for line in bad_file.read_text(encoding="utf-8").splitlines()]
    assert [r[0] for r in rows] == ["ghost", "truncated", "noise"]
    assert rows[0][1].startswith("missing: ") and "ghost.jpg" in rows[0][1]
    assert rows[1][1].startswith("corrupt: truncated.png: ")
    assert rows[2][1].startswith("corrupt: noise.jpg: ")


def test_build_from_folder_stores_files_verbatim(folder_store):
    folder, _, arrays, _, store_path = folder_store
    store = ImageLmdb(store_path)
    assert store.layout == "adapter4rec" and store.count() == 4
    assert store.get("v101") == (folder / "v101.png").read_bytes()
    assert store.get("B0AAAAAAAA") == (folder / "B0AAAAAAAA.jpg").read_bytes()
    assert store.get("v103") == (folder / "v103.PNG").read_bytes()
    for name in ("ghost", "truncated", "noise"):
        assert store.get(name) is None


@pytest.mark.parametrize("num_workers", [0, 2])
def test_folder_round_trip_to_pixel_table(folder_store, tmp_path, num_workers):
    folder, _, arrays, _, store_path = folder_store
    good = ["v104", "v101", "B0AAAAAAAA", "v103"]
    table, report = table_of(store_path, good, ImageSpec(6, 8), tmp_path / "cache",
                             num_workers=num_workers, batch_size=1)
    assert (report["missing"], report["corrupt"], report["upscaled"], report["converted"]) == ([], [], 0, {})
    assert len(table) == 5 and table.array.shape == (5, 3, 6, 8)
    got = table.gather(torch.tensor([3, 0, 2, 4, 1, 2]))
    assert got.dtype == torch.uint8 and got.shape == (6, 3, 6, 8)
    assert torch.all(got[1] == 0)
    np.testing.assert_array_equal(got[3].numpy(), chw(arrays["v103"]))  # PNG: exact pixels
    np.testing.assert_array_equal(got[2].numpy(), chw(arrays["v101"]))
    np.testing.assert_array_equal(got[5].numpy(), chw(arrays["v101"]))
    for row, path in ((0, "B0AAAAAAAA.jpg"), (4, "v104.jpeg")):
        expected = np.asarray(Image.open(folder / path).convert("RGB"))  # JPEG: PIL's own decode
        np.testing.assert_array_equal(got[row].numpy(), chw(expected), err_msg=path)
        assert not np.array_equal(expected, arrays[Path(path).stem])  # lossy: the comparison is meaningful


def test_folder_with_bad_items_blank_policy(folder_store, tmp_path):
    _, names, arrays, _, store_path = folder_store
    spec = ImageSpec(6, 8)
    out = tmp_path / "cache"
    table, report = table_of(store_path, names, spec, out, missing="blank")
    # bad files never reached the store, so the cache sees them as missing
    assert report["missing"] == ["ghost", "truncated", "noise"] and report["corrupt"] == []
    for row in (3, 4, 6):
        np.testing.assert_array_equal(table.array[row], spec.blank())
    np.testing.assert_array_equal(table.array[1], chw(arrays["v101"]))
    np.testing.assert_array_equal(table.array[5], chw(arrays["v103"]))
    assert json.loads(next(out.glob("pixels-*.json")).read_text())["facts"] == report  # kept with the record


def test_build_from_folder_requires_folder(tmp_path):
    items = write_items(tmp_path / "items.tsv", ["a"])
    with pytest.raises(FileNotFoundError, match="absent"):
        build_from_folder(items, tmp_path / "absent", tmp_path / "s.lmdb")


# ---------------------------------------------------------------- build_pixel_cache

@pytest.fixture
def mixed_store(tmp_path):
    """Our layout: RGB, L, RGBA, P, tiny, large and corrupt entries (the cache spec is 8x8)."""
    rgba = pattern(8, 8, 12, channels=4)
    rgba[0, 0, 3] = 0
    palette = Image.fromarray(pattern(8, 8, 13, channels=1), "L").convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    entries = {"rgb": encode(pattern(8, 8, 10)), "gray": encode(pattern(8, 8, 11, channels=1)),
               "rgba": encode(rgba), "pal": buffer.getvalue(), "tiny": encode(pattern(1, 1, 14)),
               "big": encode(pattern(32, 24, 15)), "bad": b"\x89PNG\r\n\x1a\n garbage",
               "jpg": encode(pattern(8, 8, 16), "JPEG")}
    for i in range(6):
        entries[f"x{i}"] = encode(pattern(8, 8, 20 + i))
    write_lmdb(tmp_path / "mixed.lmdb", entries.items(), MAP)
    return tmp_path / "mixed.lmdb", entries


def test_pixel_cache_rows_match_decode(mixed_store, tmp_path):
    store_path, entries = mixed_store
    names = [n for n in entries if n != "bad"]
    spec = ImageSpec(8, 8)
    table, report = table_of(store_path, names, spec, tmp_path / "c", batch_size=3)
    assert report["items"] == len(names) and report["layout"] == "adapter4rec"
    assert report["converted"] == {"L": 1, "RGBA": 1, "P": 1}
    assert report["upscaled"] == 1
    assert np.all(table.array[0] == 0)
    for row, name in enumerate(names, start=1):
        np.testing.assert_array_equal(table.array[row], decode(entries[name], spec)[0], err_msg=name)
    np.testing.assert_array_equal(table.array[names.index("rgba") + 1][:, 0, 0], [255, 255, 255])


def test_pixel_cache_workers_equal_single_process(mixed_store, tmp_path):
    store_path, entries = mixed_store
    names = list(entries) + ["ghost"]
    spec = ImageSpec(8, 8)
    single, report0 = table_of(store_path, names, spec, tmp_path / "a", "blank", batch_size=2)
    multi, report2 = table_of(store_path, names, spec, tmp_path / "b", "blank", num_workers=2,
                              batch_size=2)
    np.testing.assert_array_equal(np.asarray(single.array), np.asarray(multi.array))
    assert report0 == report2
    assert report0["missing"] == ["ghost"] and [c.split(" ")[0] for c in report0["corrupt"]] == ["bad"]


def test_pixel_cache_missing_error_names_items_and_leaves_nothing(mixed_store, tmp_path):
    store_path, entries = mixed_store
    spec = ImageSpec(8, 8)
    out = tmp_path / "cache"
    table_of(store_path, ["rgb", "gray"], spec, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    names = ["rgb", "ghost_one", "gray", "bad", "ghost_two"]
    with pytest.raises(DataError) as err:
        table_of(store_path, names, spec, out, "error")
    message = str(err.value)
    assert "2 item(s)" in message and "1 cannot be decoded" in message
    for name in ("ghost_one", "ghost_two", "'bad ("):
        assert name in message
    assert "rgb" not in message.split("e.g.")[1].split(";")[0]
    # no temporary or half-built file left, the earlier record untouched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and len(before) == 2


def test_pixel_cache_blank_policy_counts_and_report_file(mixed_store, tmp_path):
    store_path, _ = mixed_store
    spec = ImageSpec(8, 8, mean=(0.2, 0.4, 0.6))
    out = tmp_path / "cache"
    table, report = table_of(store_path, ["ghost_one", "rgb", "bad", "ghost_two"], spec, out, "blank")
    assert report["missing"] == ["ghost_one", "ghost_two"]
    assert len(report["corrupt"]) == 1 and report["corrupt"][0].startswith("bad (")
    for row in (1, 3, 4):
        np.testing.assert_array_equal(table.array[row], spec.blank())
    np.testing.assert_array_equal(table.array[1][:, 0, 0], [51, 102, 153])
    assert np.all(table.array[0] == 0)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and files[0].startswith("pixels-mixed.lmdb-") and files[0].endswith(".bin")
    assert json.loads((out / files[1]).read_text())["facts"] == report


def test_original_layout_decodes_to_same_pixels(tmp_path, original_pickle):
    arrays = {f"v{100 + i}": pattern(6, 5, 30 + i) for i in range(5)}
    ours = tmp_path / "ours.lmdb"
    write_lmdb(ours, [(n, encode(a)) for n, a in arrays.items()], MAP)
    original = write_original(tmp_path / "orig.lmdb",
                              {str(int(n[1:])).encode(): pickled_image(a, int(n[1:])) for n, a in arrays.items()})
    names = list(arrays)
    for spec in (ImageSpec(6, 5), ImageSpec(12, 9)):
        a, report_a = table_of(ours, names, spec, tmp_path / "a")
        b, report_b = table_of(original, names, spec, tmp_path / "b", num_workers=2, batch_size=2)
        assert (report_a["layout"], report_b["layout"]) == ("adapter4rec", "original")
        np.testing.assert_array_equal(np.asarray(a.array), np.asarray(b.array))
        if spec.height == 6:
            np.testing.assert_array_equal(b.array[3], chw(arrays["v102"]))


def test_pixel_key_changes_with_inputs(mixed_store):
    store_path, _ = mixed_store
    names, spec = ["rgb", "gray"], ImageSpec(8, 8)

    def digest(*args):
        return key_digest(pixel_key(store_path, *args))
    base = digest(names, spec, "error")
    assert base == digest(list(names), ImageSpec(8, 8), "error")
    variants = [digest(names, ImageSpec(8, 9), "error"), digest(names, ImageSpec(8, 8, mean=(0.4, 0.5, 0.5)), "error"),
                digest(names, ImageSpec(8, 8, resample=int(Image.Resampling.BICUBIC)), "error"),
                digest(["gray", "rgb"], spec, "error"), digest(["rgb"], spec, "error"), digest(names, spec, "blank")]
    assert len({base, *variants}) == 7
    write_lmdb(store_path, [("rgb", b"other bytes" * 1000)], MAP)  # rebuilt store
    assert digest(names, spec, "error") != base


# ---------------------------------------------------------------- synthetic images

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_images")
    return root, generate_images(root, preset="tiny")


def lmdb_values(path: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        values = dict(txn.cursor())
    env.close()
    return values


def test_generate_images_deterministic(synthetic, tmp_path):
    root, report = synthetic
    assert generate_images(tmp_path / "same", preset="tiny") == report
    other = generate_images(tmp_path / "other", seed=7, preset="tiny")
    for domain in ("source", "target"):
        for name in ("users.tsv", "items.tsv"):
            same = (tmp_path / "same" / domain / name).read_bytes()
            assert same == (root / domain / name).read_bytes()
            assert same != (tmp_path / "other" / domain / name).read_bytes()
        values = lmdb_values(root / domain / "images.lmdb")
        assert lmdb_values(tmp_path / "same" / domain / "images.lmdb") == values
        other_values = lmdb_values(tmp_path / "other" / domain / "images.lmdb")
        assert set(other_values).isdisjoint(set(values) - {b"__meta__"})
    assert other["seed"] == 7


def test_generate_images_names_and_files(synthetic):
    root, report = synthetic
    patterns = {"source": (r"v\d{6}", b"\xff\xd8\xff", 96), "target": (r"B0[0-9A-Z]{8}", b"\x89PNG", 80)}
    for domain, (name_re, magic, n_items) in patterns.items():
        names = read_item_names(root / domain / "items.tsv").ids
        assert len(names) == n_items == report[domain]["items"] == report[domain]["images_stored"]
        assert names == sorted(names)
        assert all(re.fullmatch(name_re, n) for n in names), names[:5]
        store = ImageLmdb(root / domain / "images.lmdb")
        assert store.layout == "adapter4rec" and store.count() == n_items
        for name in names:
            data = store.get(name)
            assert data is not None and data.startswith(magic), name
        with Image.open(io.BytesIO(store.get(names[0]))) as image:
            assert (image.size, image.mode) == ((32, 32), "RGB")
        assert (root / domain / "images.lmdb.bad.tsv").read_text() == ""


def test_generate_images_users(synthetic):
    root, report = synthetic
    for domain in ("source", "target"):
        known = set(read_item_names(root / domain / "items.tsv").ids)
        lines = (root / domain / "users.tsv").read_text(encoding="utf-8").splitlines()
        users = [line.split("\t") for line in lines]
        assert all(len(cols) == 2 for cols in users)
        assert len({u for u, _ in users}) == len(users) == report[domain]["users"] > 0
        sequences = [items.split(" ") for _, items in users]
        assert all(len(seq) >= 5 for seq in sequences)
        assert all(set(seq) <= known for seq in sequences)
        assert all(len(set(seq)) == len(seq) for seq in sequences)  # no repeats within a user
        assert sum(map(len, sequences)) == report[domain]["interactions"]
    source_users = [line.split("\t")[0] for line in (root / "source" / "users.tsv").read_text().splitlines()]
    target_users = [line.split("\t")[0] for line in (root / "target" / "users.tsv").read_text().splitlines()]
    assert all(re.fullmatch(r"[0-9a-f]{16}", u) for u in source_users)
    assert all(re.fullmatch(r"A[0-9A-Z]{13}", u) for u in target_users)


def test_generate_images_unknown_preset(tmp_path):
    with pytest.raises(ValueError, match="'huge'"):
        generate_images(tmp_path, preset="huge")
    assert list(tmp_path.iterdir()) == []


def test_topic_looks_distinct():
    looks = [topic_look(t) for t in range(N_TOPICS)]
    assert len(set(looks)) == N_TOPICS
    assert len({hue for hue, _ in looks}) == N_TOPICS
    assert all(0.0 <= hue < 1.0 for hue, _ in looks)
    assert {shape: sum(s == shape for _, s in looks) for shape in SHAPES} == {s: 4 for s in SHAPES}


def _object_hue(image: Image.Image) -> float:
    """Circular mean hue of the saturated (object) pixels."""
    pixels = np.asarray(image).reshape(-1, 3) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
    hue = hsv[hsv[:, 1] > 0.4, 0]
    assert len(hue) > 20  # the object is visible
    angle = np.angle(np.exp(2j * np.pi * hue).mean())
    return (angle / (2 * np.pi)) % 1.0


@pytest.mark.parametrize("studio", [True, False])
def test_drawn_items_show_their_topic_hue(studio):
    rng = np.random.default_rng(0)
    hues = np.array([topic_look(t)[0] for t in range(N_TOPICS)])
    for topic in range(N_TOPICS):
        for _ in range(2):
            hue = _object_hue(draw_item(rng, topic, 32, studio=studio))
            distance = np.abs((hues - hue + 0.5) % 1.0 - 0.5)
            assert int(np.argmin(distance)) == topic and distance[topic] < 0.025
