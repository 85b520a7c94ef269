"""Deterministic synthetic news-recommendation data in two domains.

Source domain: MIND format (`items.tsv` = id, title, abstract). Target domain: Adressa format
(`items.tsv` = id, title). Both domains share topics, vocabularies and a latent topic
transition structure, but no items and no titles, so what a model learns about *content and
order* transfers while item ids do not.

User process: each user has a sparse topic preference. The first topic comes from the
preference; every next topic follows the previous topic's transition row with probability
`p_follow` (each topic has 1-2 favoured successors), otherwise the preference again. Inside a
topic items are drawn by Zipf-like popularity, without repeats within a user.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from adapter4rec.data.synthetic.vocab import (ABSTRACT_CLAUSES, CONNECTORS, FILLERS, TITLE_TEMPLATES,
                                              TOPICS, Topic)


@dataclass(frozen=True)
class DomainSpec:
    """Size and behaviour of one domain."""
    n_users: int
    items_per_topic: int
    p_follow: float = 0.65      # probability that the next topic follows the transition structure
    pref_alpha: float = 0.3     # Dirichlet concentration of user topic preferences (small = sparse)
    zipf_exponent: float = 1.0  # item popularity within a topic ~ 1 / rank**exponent
    min_len: int = 5
    mean_len: float = 10.0
    max_len: int = 30


@dataclass(frozen=True)
class Preset:
    source: DomainSpec
    target: DomainSpec
    successor_mass: float = 0.8  # share of a transition row that goes to the 1-2 successor topics


PRESETS: Mapping[str, Preset] = types.MappingProxyType({
    "default": Preset(source=DomainSpec(n_users=6000, items_per_topic=50),
                      target=DomainSpec(n_users=1500, items_per_topic=30)),
    "tiny": Preset(source=DomainSpec(n_users=600, items_per_topic=12),
                   target=DomainSpec(n_users=200, items_per_topic=8)),
})


@dataclass(frozen=True)
class _Domain:
    item_ids: list[str]          # item index -> id
    item_topic: np.ndarray       # item index -> topic index
    titles: list[str]
    abstracts: list[str] | None  # None for the Adressa-style target
    users: dict[str, list[int]]  # user id -> time-ordered item indices


@dataclass(frozen=True)
class _World:
    transition: np.ndarray       # (n_topics, n_topics), rows sum to 1
    successors: list[list[int]]  # topic -> its favoured successor topics
    source: _Domain
    target: _Domain


def vocabulary() -> list[str]:
    """Sorted unique list of every word that can appear in a title or an abstract."""
    words: set[str] = set(FILLERS) | set(CONNECTORS)
    for topic in TOPICS:
        words.update(topic.nouns, topic.verbs, topic.adjectives)
    return sorted(words)


# ---------------------------------------------------------------- latent structure

def transition_matrix(rng: np.random.Generator, n_topics: int,
                       successor_mass: float) -> tuple[np.ndarray, list[list[int]]]:
    """Each topic sends most of its mass to 1-2 other topics; the rest is spread uniformly."""
    matrix = np.zeros((n_topics, n_topics))
    successors: list[list[int]] = []
    for topic in range(n_topics):
        others = [t for t in range(n_topics) if t != topic]
        n_succ = int(rng.integers(1, 3))
        chosen = sorted(int(t) for t in rng.choice(others, size=n_succ, replace=False))
        split = [1.0] if n_succ == 1 else [float(s) for s in rng.dirichlet([3.0, 3.0])]
        rest = [t for t in range(n_topics) if t not in chosen]
        matrix[topic, rest] = (1.0 - successor_mass) / len(rest)
        matrix[topic, chosen] = successor_mass * np.asarray(split)
        successors.append(chosen)
    return matrix, successors


# ---------------------------------------------------------------- text

def _fill(rng: np.random.Generator, pattern: str, topic: Topic) -> list[str]:
    pools = {"N": topic.nouns, "V": topic.verbs, "A": topic.adjectives, "F": FILLERS, "C": CONNECTORS}
    return [pools[slot][int(rng.integers(len(pools[slot])))] for slot in pattern.split()]


def _title(rng: np.random.Generator, topic: Topic, taken: set[str]) -> str:
    """A headline not in `taken`; re-drawn on collision or on a repeated word."""
    while True:
        words = _fill(rng, TITLE_TEMPLATES[int(rng.integers(len(TITLE_TEMPLATES)))], topic)
        title = " ".join(words)
        if len(set(words)) == len(words) and title not in taken:
            taken.add(title)
            return title


def _abstract(rng: np.random.Generator, topic: Topic) -> str:
    """12-20 words: clauses of the same topic joined by connectors."""
    words: list[str] = []
    while len(words) < 12:
        if words:
            words.append(CONNECTORS[int(rng.integers(len(CONNECTORS)))])
        words.extend(_fill(rng, ABSTRACT_CLAUSES[int(rng.integers(len(ABSTRACT_CLAUSES)))], topic))
    return " ".join(words)


# ---------------------------------------------------------------- ids

def _source_ids(rng: np.random.Generator, n_items: int, n_users: int) -> tuple[list[str], list[str]]:
    """MIND style: `N12345` items and `U12345` users, unique random numbers."""
    items = rng.choice(np.arange(10000, 100000), size=n_items, replace=False)
    users = rng.choice(np.arange(1000, 1000 + max(20 * n_users, 9000)), size=n_users, replace=False)
    return [f"N{i}" for i in items], [f"U{u}" for u in users]


def _hex_ids(rng: np.random.Generator, count: int, n_bytes: int, prefix: str) -> list[str]:
    """Adressa style: random hex strings, re-drawn on the (unlikely) collision."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        candidate = prefix + rng.bytes(n_bytes).hex()
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


# ---------------------------------------------------------------- sequences

def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)


def _pick_item(rng: np.random.Generator, candidates: np.ndarray, cdf: np.ndarray,
               used: set[int]) -> int | None:
    """Popularity draw among the topic's items not yet in the sequence (None if none left)."""
    for _ in range(8):  # rejection is cheap and exact while few items are used
        item = int(candidates[_draw(rng, cdf)])
        if item not in used:
            return item
    free = [i for i, item in enumerate(candidates) if int(item) not in used]
    if not free:
        return None
    weights = np.diff(cdf, prepend=0.0)[free]
    return int(candidates[free[_draw(rng, np.cumsum(weights / weights.sum()))]])


def _sequence(rng: np.random.Generator, spec: DomainSpec, length: int, pref_cdf: np.ndarray,
              trans_cdf: np.ndarray, topic_items: list[np.ndarray], pop_cdf: np.ndarray) -> list[int]:
    seq: list[int] = []
    used: set[int] = set()
    topic = _draw(rng, pref_cdf)
    while len(seq) < length:
        if seq:
            follow = rng.random() < spec.p_follow
            topic = _draw(rng, trans_cdf[topic] if follow else pref_cdf)
        item = _pick_item(rng, topic_items[topic], pop_cdf, used)
        for _ in range(20):  # topic exhausted by this user: fall back to the preference
            if item is not None:
                break
            topic = _draw(rng, pref_cdf)
            item = _pick_item(rng, topic_items[topic], pop_cdf, used)
        if item is None:  # preference fully exhausted (tiny domains only): stop early
            break
        seq.append(item)
        used.add(item)
    return seq


def draw_users(rng: np.random.Generator, spec: DomainSpec, transition: np.ndarray,
           item_topic: np.ndarray, user_ids: list[str]) -> dict[str, list[int]]:
    n_topics = transition.shape[0]
    topic_items = [np.flatnonzero(item_topic == t) for t in range(n_topics)]
    ranks = np.arange(1, spec.items_per_topic + 1, dtype=float)
    popularity = ranks ** -spec.zipf_exponent
    pop_cdf = np.cumsum(popularity / popularity.sum())
    trans_cdf = np.cumsum(transition, axis=1)
    p_geom = 1.0 / (spec.mean_len - spec.min_len + 1.0)
    users: dict[str, list[int]] = {}
    for user_id in user_ids:
        pref = rng.dirichlet(np.full(n_topics, spec.pref_alpha))
        length = min(spec.max_len, spec.min_len - 1 + int(rng.geometric(p_geom)))
        users[user_id] = _sequence(rng, spec, length, np.cumsum(pref), trans_cdf, topic_items, pop_cdf)
    return users


def _domain(rng: np.random.Generator, spec: DomainSpec, transition: np.ndarray,
            taken_titles: set[str], mind_style: bool) -> _Domain:
    n_items = len(TOPICS) * spec.items_per_topic
    # Item index = topic * items_per_topic + popularity rank, so rank 0 is each topic's hit.
    item_topic = np.repeat(np.arange(len(TOPICS)), spec.items_per_topic)
    titles = [_title(rng, TOPICS[t], taken_titles) for t in item_topic]
    abstracts = [_abstract(rng, TOPICS[t]) for t in item_topic] if mind_style else None
    if mind_style:
        item_ids, user_ids = _source_ids(rng, n_items, spec.n_users)
    else:
        item_ids, user_ids = _hex_ids(rng, n_items, 6, ""), _hex_ids(rng, spec.n_users, 8, "cx:")
    users = draw_users(rng, spec, transition, item_topic, user_ids)
    # Drop users the no-repeat rule left too short, so every user keeps >= min_len items.
    users = {u: s for u, s in users.items() if len(s) >= spec.min_len}
    return _Domain(item_ids, item_topic, titles, abstracts, users)


def _build_world(seed: int, preset: str) -> _World:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    # Independent streams, so changing a target size never changes the source data.
    structure_seq, source_seq, target_seq = np.random.SeedSequence(seed).spawn(3)
    transition, successors = transition_matrix(np.random.default_rng(structure_seq), len(TOPICS),
                                                spec.successor_mass)
    taken: set[str] = set()  # shared, so target titles never repeat a source title
    source = _domain(np.random.default_rng(source_seq), spec.source, transition, taken, True)
    target = _domain(np.random.default_rng(target_seq), spec.target, transition, taken, False)
    return _World(transition, successors, source, target)


# ---------------------------------------------------------------- output

def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8", newline="\n")


def _write_domain(out_dir: Path, domain: _Domain) -> dict[str, int]:
    ids = domain.item_ids
    if domain.abstracts is None:
        item_lines = [f"{ids[i]}\t{domain.titles[i]}" for i in range(len(ids))]
    else:
        item_lines = [f"{ids[i]}\t{domain.titles[i]}\t{domain.abstracts[i]}" for i in range(len(ids))]
    user_lines = [f"{u}\t{' '.join(ids[i] for i in seq)}" for u, seq in domain.users.items()]
    _write_lines(out_dir / "items.tsv", item_lines)
    _write_lines(out_dir / "users.tsv", user_lines)
    return {"users": len(domain.users), "items": len(ids),
            "interactions": sum(len(s) for s in domain.users.values())}


def generate(out_dir: Path, seed: int = 2024, preset: str = "default") -> dict:
    """Write source/{users,items}.tsv (MIND) and target/{users,items}.tsv (Adressa) under out_dir."""
    world = _build_world(seed, preset)
    out_dir = Path(out_dir)
    return {"seed": seed, "preset": preset,
            "source": _write_domain(out_dir / "source", world.source),
            "target": _write_domain(out_dir / "target", world.target)}
