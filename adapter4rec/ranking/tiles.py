"""The counting kernel of full-ranking evaluation: per user, how many items score above / level with its target.

Products are small tiles (a group of users x a tile of items, the group's target rows appended), so scores
stay in cache from the GEMM to the counts and never form a (users x items) matrix; see count_above. The
threads run whole tiles, each with single-threaded torch ops (run_workers).
"""
from __future__ import annotations

import itertools
import math
import threading
from typing import Callable

import torch

# on a CPU: users per product and items per tile (a (128, 1024 + 128) fp32 score tile, 0.6 MB, stays in cache)
GROUP, TILE = 128, 1024
COLUMN_BLOCK = 16  # a product's columns come in whole blocks of this many (see count_above)


def count_above(u: torch.Tensor, table: torch.Tensor, target: torch.Tensor, seen: tuple, item_chunk: int,
                group: int | None = None, tile: int | None = None, threads: int | None = None,
                span: tuple[int, int] | None = None):
    """(greater, ties) per user over the table's rows span = [lo, hi) (default: all, row 0 = padding), excluding
    the user's seen items, the target itself and the padding row. u: (b, d); table: (N+1, d); target: (b,) rows
    of the table (also outside the span); seen: (user position, item row) pairs.

    Each product is (a group of `group` users) x (a tile of at most item_chunk items + the group's target rows
    appended), so a target is compared with scores from the very GEMM call that produced its own: equal
    embeddings give equal scores, ties stay ties. The excluded items (padding, history, the target) are set to
    -inf in the tile's scores (positions precomputed once, one index_fill per product), then one compare pass
    each for "above" and "level" into a float 0/1 buffer, summed per tile in fp32 (exact: at most one tile of
    ones) into float64 counts. On a CPU a tile is small (128 x (1024 + 128) fp32 = 0.6 MB) so the scores stay
    in cache from the product to the counts, each item tile is copied next to the targets once per call (not
    once per user batch), and `threads` workers (torch's thread count by default) take whole tiles, each with
    single-threaded ops. Elsewhere (a GPU) one worker runs 256 users x item_chunk tiles, like the old path."""
    cpu = u.device.type == "cpu"
    d = table.shape[1]
    first, end = span or (0, table.shape[0])
    n = end - first  # rows counted
    b = len(target)
    t_items = max(1, min(item_chunk, n, tile or (TILE if cpu else item_chunk)))
    # never one user per product: MKL computes a 1-row product as a matrix-vector product whose columns do not
    # all round alike (equal items would not tie); a padded second user costs nothing
    g = max(2, min(b, group or (GROUP if cpu else 256)))
    groups, tiles = -(-b // g), -(-n // t_items)
    users = u.new_zeros(groups * g, d)
    users[:b] = u
    targets = table.new_zeros(groups * g, d)
    targets[:b] = table[target]
    # the product's width, rounded up to whole column blocks: MKL computes a remainder of columns (width % 4, and
    # more of them in small products) with another kernel whose sums round differently on some CPUs (seen on an
    # AMD EPYC), which would split equal items' ties; the zero columns added are never counted
    width_all = -(-(t_items + g) // COLUMN_BLOCK) * COLUMN_BLOCK
    # excluded (user, item) pairs: the history, the target itself and the padding item, as flat positions in
    # a tile's (g, width_all) score buffer, sorted by (tile, group) so each product fills one slice
    which, items = (t.to(u.device) for t in seen)
    mine = torch.arange(b, device=u.device)
    rows = torch.cat([which, mine, mine])
    cols = torch.cat([items, target, torch.zeros_like(target)]) - first  # columns of the span
    inside = (cols >= 0) & (cols < n)
    rows, cols = rows[inside], cols[inside]
    key, order = ((cols // t_items) * groups + rows // g).sort()
    flat = ((rows % g) * width_all + cols % t_items)[order]
    group_edges = torch.arange(groups + 1, device=u.device)
    threads = max(1, min(threads or (torch.get_num_threads() if cpu else 1), tiles))
    greater = torch.zeros(threads, groups * g, dtype=torch.float64, device=u.device)  # per worker
    ties = torch.zeros_like(greater)
    next_tile = itertools.count()  # tiles are handed out one by one (next() is atomic under the GIL)
    stop = threading.Event()       # set when a worker fails: the others stop too

    def work(w: int) -> None:
        buf = table.new_zeros(width_all, d)                          # [item tile; the group's targets; zeros]
        out = table.new_empty(g, width_all)                          # its scores
        hit = table.new_empty(g, t_items)                            # 1.0 where above (level) the target
        count = table.new_empty(g)                                   # per tile: exact in fp32
        flat_out, buf_t, tail = out.view(-1), buf.T, buf[t_items:t_items + g]
        target_score = out[:, t_items:t_items + g].diagonal().unsqueeze(1)  # user r's own target, same product
        views = [(users[k * g:(k + 1) * g], targets[k * g:(k + 1) * g], greater[w, k * g:(k + 1) * g],
                  ties[w, k * g:(k + 1) * g]) for k in range(groups)]
        for j in iter(next_tile.__next__, None):
            if j >= tiles or stop.is_set():
                return
            c0 = j * t_items
            width = min(t_items, n - c0)
            buf[:width] = table[first + c0:first + c0 + width]
            scores, counted = out[:, :width], hit[:, :width]
            bounds = torch.searchsorted(key, j * groups + group_edges).tolist()
            for (uk, tk, above, level), lo, hi in zip(views, bounds, bounds[1:]):
                tail.copy_(tk)
                torch.mm(uk, buf_t, out=out)
                if hi > lo:
                    flat_out.index_fill_(0, flat[lo:hi], -math.inf)
                # a NaN competitor is neither above nor level (comparisons with NaN are False): below the target.
                # A non-finite target's counts are meaningless; evaluate.metrics_of_targets ranks it last
                torch.gt(scores, target_score, out=counted)
                above += torch.sum(counted, 1, out=count)
                torch.eq(scores, target_score, out=counted)
                level += torch.sum(counted, 1, out=count)

    run_workers(work, threads, cpu, stop)
    return greater.sum(0)[:b], ties.sum(0)[:b]


def run_workers(work: Callable[[int], None], threads: int, single_threaded_ops: bool,
                stop: threading.Event | None = None) -> None:
    """work(0), ..., work(threads - 1) in parallel threads, work(0) in the calling one; the first error is
    re-raised here (after `stop` is set and every worker has returned). single_threaded_ops (a CPU): torch's
    intra-op threads are 1 meanwhile (restored afterwards), so the workers' small ops pay no OpenMP barrier
    each, which would also stall them whenever another process holds a core."""
    if not single_threaded_ops:
        for w in range(threads):
            work(w)
        return
    saved = torch.get_num_threads()
    errors = []

    def run(w: int) -> None:
        try:
            torch.set_num_threads(1)  # this thread's OpenMP team and MKL
            work(w)
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(error)
            if stop is not None:
                stop.set()
    pool = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(1, threads)]
    try:
        for thread in pool:
            thread.start()
        run(0)
        for thread in pool:
            thread.join()
    finally:
        torch.set_num_threads(saved)
    if errors:
        raise errors[0]
