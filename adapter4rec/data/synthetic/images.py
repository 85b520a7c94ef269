"""Deterministic synthetic image-recommendation data in two domains, for the CV tree's demo and tests.

Source: HM format (items `v<int>`, JPEG images). Target: Amazon format (ASIN items, PNG images). Each
domain has one item per (topic, rank); a topic has its own look — a hue and a shape (circle, square,
triangle, cross) — and items vary around it (hue, saturation, brightness, size, position, rotation).
Users follow the same latent process as the text generator (sparse topic preference + a topic transition
structure shared by both domains, see synthetic.py), so an item's topic, and with it what comes next, can
only be read from its pixels. The domains differ in background (source: white studio, target: warm
gradient) and object scale, and share no items: what transfers is visual and sequential knowledge.

`generate_images(out)` writes {source,target}/{items.tsv, users.tsv, images/, images.lmdb}.
"""
from __future__ import annotations

import colorsys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from adapter4rec.data.prepare.image_folders import build_from_folder
from adapter4rec.data.synthetic.text import DomainSpec, draw_users, transition_matrix

N_TOPICS = 16
SHAPES = ("circle", "square", "triangle", "cross")


@dataclass(frozen=True)
class ImagePreset:
    source: DomainSpec
    target: DomainSpec
    size: int = 64                # generated image side (the encoder resizes to its own input size)
    successor_mass: float = 0.8


IMAGE_PRESETS: Mapping[str, ImagePreset] = types.MappingProxyType({
    "default": ImagePreset(source=DomainSpec(n_users=4000, items_per_topic=40, mean_len=9.0, zipf_exponent=0.6),
                           target=DomainSpec(n_users=700, items_per_topic=25, mean_len=9.0, zipf_exponent=0.6)),
    "tiny": ImagePreset(source=DomainSpec(n_users=300, items_per_topic=6),
                        target=DomainSpec(n_users=120, items_per_topic=5), size=32),
})


def topic_look(topic: int) -> tuple[float, str]:
    """(hue in [0, 1), shape): hues spread over the wheel, scrambled so neighbouring hues differ in shape."""
    return ((topic * 5) % N_TOPICS) / N_TOPICS, SHAPES[topic % len(SHAPES)]


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [np.pi / 4 + k * np.pi / 2 for k in range(4)]
    elif shape == "triangle":
        corners = [-np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]
    else:  # cross: 12 corners of a plus sign
        arm, points = 0.38, []
        for k in range(4):
            base = k * np.pi / 2
            for da, r in ((-np.arctan(arm), 1.0), (np.arctan(arm), 1.0)):
                points.append((base + da, r / np.cos(np.arctan(arm))))
            points.append((base + np.pi / 4, arm * np.sqrt(2)))
        return [(cx + radius * r * np.cos(a + angle), cy + radius * r * np.sin(a + angle)) for a, r in points]
    return [(cx + radius * np.cos(a + angle), cy + radius * np.sin(a + angle)) for a in corners]


def _background(rng: np.random.Generator, size: int, studio: bool) -> Image.Image:
    if studio:  # near-white with light sensor noise
        pixels = 245 + rng.normal(0, 3, (size, size, 1)).repeat(3, axis=2)
    else:       # warm vertical gradient
        ramp = np.linspace(0, 1, size)[:, None, None]
        top, bottom = np.array([236, 226, 210]), np.array([200, 186, 170])
        pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 2, (size, size, 3))
        pixels = pixels * np.ones((1, size, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def draw_item(rng: np.random.Generator, topic: int, size: int, studio: bool) -> Image.Image:
    hue, shape = topic_look(topic)
    hue = (hue + rng.uniform(-0.012, 0.012)) % 1.0
    colour = colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95))
    image = _background(rng, size, studio)
    draw = ImageDraw.Draw(image)
    scale = 0.33 if studio else 0.27
    radius = size * scale * rng.uniform(0.8, 1.15)
    cx, cy = size * (0.5 + rng.uniform(-0.1, 0.1)), size * (0.5 + rng.uniform(-0.1, 0.1))
    fill = tuple(int(255 * c) for c in colour)
    outline = tuple(int(0.6 * c) for c in fill)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill, outline=outline, width=2)
    else:
        draw.polygon(_polygon(shape, cx, cy, radius, rng.uniform(-0.35, 0.35)), fill=fill, outline=outline)
    return image


def _names(rng: np.random.Generator, count: int, make) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = make(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _hm_item(rng):
    return f"v{int(rng.integers(100000, 1000000))}"


def _asin(rng):
    return "B0" + "".join(rng.choice(ALNUM, 8))


def _hm_user(rng):
    return rng.bytes(8).hex()


def _amazon_user(rng):
    return "A" + "".join(rng.choice(ALNUM, 13))


def _write_domain(rng: np.random.Generator, out: Path, spec: DomainSpec, transition: np.ndarray, size: int,
                  hm_style: bool) -> dict:
    n_items = N_TOPICS * spec.items_per_topic
    item_topic = np.repeat(np.arange(N_TOPICS), spec.items_per_topic)  # index = topic * per_topic + rank
    names = _names(rng, n_items, _hm_item if hm_style else _asin)
    user_ids = _names(rng, spec.n_users, _hm_user if hm_style else _amazon_user)
    users = draw_users(rng, spec, transition, item_topic, user_ids)
    users = {u: s for u, s in users.items() if len(s) >= spec.min_len}
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name, topic in zip(names, item_topic):
        image = draw_item(rng, int(topic), size, studio=hm_style)
        if hm_style:
            image.save(folder / f"{name}.jpg", quality=92)
        else:
            image.save(folder / f"{name}.png")
    (out / "items.tsv").write_text("".join(f"{n}\n" for n in sorted(names)), encoding="utf-8")
    lines = sorted(f"{u}\t{' '.join(names[i] for i in seq)}" for u, seq in users.items())
    (out / "users.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    store = build_from_folder(out / "items.tsv", folder, out / "images.lmdb")
    return {"users": len(users), "items": n_items, "interactions": sum(len(s) for s in users.values()),
            "images_stored": store["stored"]}


def generate_images(out_dir: Path, seed: int = 2024, preset: str = "default") -> dict:
    """Write the HM-format source and the Amazon-format target under out_dir; returns counts."""
    if preset not in IMAGE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(IMAGE_PRESETS)}")
    spec = IMAGE_PRESETS[preset]
    structure, source, target = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    transition, _ = transition_matrix(structure, N_TOPICS, spec.successor_mass)
    out_dir = Path(out_dir)
    return {"seed": seed, "preset": preset,
            "source": _write_domain(source, out_dir / "source", spec.source, transition, spec.size, True),
            "target": _write_domain(target, out_dir / "target", spec.target, transition, spec.size, False)}
