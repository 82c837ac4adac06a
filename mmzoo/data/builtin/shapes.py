"""shapes: generated images of 1-3 coloured shapes, with captions that fully describe them and VQA pairs.

Each image is a *scene*: one to five objects (colour, kind, size) at distinct positions on a solid dark
background. Captions name every object's size, colour, kind and position, so each caption matches exactly
one scene; scenes are unique within a split. Scenes are assigned to a split by a hash of their description
(80% train, 10% validation, 10% test), so no scene appears in two splits, whatever the seeds.

Columns:
    image (PIL RGB, ``image_size`` squared), captions (list[str], 5 paraphrases, the first is canonical),
    questions (list[str]), answers (list[list[str]]: for each question the VQA-style 10 annotator answers,
    all equal here), question_types (list[str]: color, shape, size, position, count, exists),
    objects (list of {color, shape, size, position, bbox [x0, y0, x1, y1] in pixels}),
    negative_captions (list[str], only with ``negative_captions: true``): for each attribute that can change (colour,
    shape, size, position), a paraphrase of the scene's caption with that attribute of one object changed: hard
    negative captions for ITM training (``objectives.itm.caption_negatives``; NegCLIP-style).
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import DataError

VERSION = 1  # bump when the output for the same params changes

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (50, 180, 70),
    "blue": (50, 100, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 70, 210),
    "orange": (245, 140, 30),
}
KINDS = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.07, "large": 0.13}  # radius as a fraction of the image side
# Centres as fractions of the side; canonical order (captions list objects in this order).
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.22, 0.22),
    "top right": (0.78, 0.22),
    "center": (0.5, 0.5),
    "bottom left": (0.22, 0.78),
    "bottom right": (0.78, 0.78),
}
BACKGROUND = (40, 40, 40)
SPLIT_BUCKETS = {"train": (0, 80), "validation": (80, 90), "test": (90, 100)}  # per cent of the scene space
NUM_ANNOTATORS = 10  # VQA format: 10 human answers per question
_NUMBERS = ["zero", "one", "two", "three", "four", "five"]
_SUPERSAMPLE = 8  # masks are drawn at 8x then downscaled: antialiased edges
_ENUMERATE_LIMIT = 20_000  # counts with at most this many scenes are enumerated, larger ones rejection-sampled
_MAX_TRIES = 2_000


class ShapesParams(BaseModel):
    """Generation params; every one of them is part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(1000, ge=1)
    seed: int = 0
    image_size: int = Field(64, ge=16, le=1024)
    min_shapes: int = Field(1, ge=1, le=len(POSITIONS))
    max_shapes: int = Field(3, ge=1, le=len(POSITIONS))
    split: Literal["train", "validation", "test"] = "train"
    negative_captions: bool = Field(False, description="add the negative_captions column (one minimal-pair caption "
                                    "per attribute that can change)")

    @model_validator(mode="after")
    def _check_range(self) -> ShapesParams:
        if self.min_shapes > self.max_shapes:
            raise ValueError(
                f"min_shapes must be <= max_shapes (got min_shapes={self.min_shapes}, "
                f"max_shapes={self.max_shapes}); swap them or set them equal"
            )
        return self


@dataclass(frozen=True, order=True)
class Shape:
    position: str
    size: str
    color: str
    shape: str

    @property
    def noun(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


Scene = tuple[Shape, ...]  # sorted by canonical position order


def scene_key(scene: Scene) -> str:
    return "|".join(f"{o.noun}@{o.position}" for o in scene)


def scene_split(scene: Scene) -> str:
    """The split a scene belongs to, from a stable hash of its description."""
    bucket = int.from_bytes(hashlib.blake2b(scene_key(scene).encode(), digest_size=8).digest(), "big") % 100
    return next(name for name, (lo, hi) in SPLIT_BUCKETS.items() if lo <= bucket < hi)


# ----------------------------------------------------------------------------------------- scene sampling
_POS_ORDER = {p: i for i, p in enumerate(POSITIONS)}
_ATTRS = list(itertools.product(SIZES, COLORS, KINDS))


def _make_scene(positions: tuple[str, ...], attrs: tuple[tuple[str, str, str], ...]) -> Scene:
    objs = (Shape(p, *a) for p, a in zip(positions, attrs))
    return tuple(sorted(objs, key=lambda o: _POS_ORDER[o.position]))


def _scene_pool(n: int, split: str, rng: np.random.Generator) -> Iterator[Scene]:
    """Scenes with ``n`` objects in ``split``, each at most once, in random order."""
    total = math.comb(len(POSITIONS), n) * len(_ATTRS) ** n
    if total <= _ENUMERATE_LIMIT:  # small space: enumerate it, so exhausting it is exact
        scenes = [
            _make_scene(pos, attrs)
            for pos in itertools.combinations(POSITIONS, n)
            for attrs in itertools.product(_ATTRS, repeat=n)
        ]
        scenes = [s for s in scenes if scene_split(s) == split]
        yield from (scenes[i] for i in rng.permutation(len(scenes)))
        return
    seen: set[str] = set()
    names = list(POSITIONS)
    while True:  # huge space: rejection sampling; give up (exhausted) after _MAX_TRIES misses in a row
        for _ in range(_MAX_TRIES):
            pos = tuple(names[i] for i in rng.choice(len(names), n, replace=False))
            attrs = tuple(_ATTRS[i] for i in rng.integers(len(_ATTRS), size=n))
            scene = _make_scene(pos, attrs)
            key = scene_key(scene)
            if key not in seen and scene_split(scene) == split:
                seen.add(key)
                yield scene
                break
        else:
            return


def sample_scenes(p: ShapesParams) -> list[Scene]:
    """``p.num_samples`` distinct scenes of ``p.split``; the object count is drawn uniformly, and a count whose
    scenes are used up is dropped from the draw."""
    rng = np.random.default_rng([p.seed, list(SPLIT_BUCKETS).index(p.split)])
    pools = {n: _scene_pool(n, p.split, rng) for n in range(p.min_shapes, p.max_shapes + 1)}
    scenes: list[Scene] = []
    while len(scenes) < p.num_samples:
        if not pools:
            raise DataError(
                f"shapes: only {len(scenes)} distinct scenes with {p.min_shapes}..{p.max_shapes} shapes exist "
                f"in split {p.split!r}, but num_samples={p.num_samples}; lower num_samples or raise max_shapes"
            )
        n = list(pools)[rng.integers(len(pools))]
        scene = next(pools[n], None)
        if scene is None:
            del pools[n]
        else:
            scenes.append(scene)
    return scenes


# ----------------------------------------------------------------------------------------------- rendering
def _outline(obj: Shape, side: float) -> tuple[str, list[tuple[float, float]]]:
    """('ellipse' | 'polygon', points) in pixel coordinates of an image ``side`` pixels wide."""
    cx, cy = (c * side for c in POSITIONS[obj.position])
    r = SIZES[obj.size] * side
    if obj.shape == "circle":
        return "ellipse", [(cx - r, cy - r), (cx + r, cy + r)]
    if obj.shape == "square":
        h = 0.9 * r  # about the circle's area
        return "polygon", [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    t = 1.2 * r  # equilateral, pointing up; a bit larger so it reads as the same size
    angles = (math.pi / 2, -math.pi / 6, 7 * math.pi / 6)
    return "polygon", [(cx + t * math.cos(a), cy - t * math.sin(a)) for a in angles]


@functools.lru_cache(maxsize=8)
def _coverage(image_size: int) -> dict[tuple[str, str, str], tuple[tuple[int, int], Image.Image]]:
    """Antialiased coverage mask ("L", cropped to its box) of every (position, size, kind), drawn once per size."""
    big = image_size * _SUPERSAMPLE
    masks = {}
    for position, size, kind in itertools.product(POSITIONS, SIZES, KINDS):
        canvas = Image.new("L", (big, big), 0)
        method, pts = _outline(Shape(position, size, "red", kind), big)
        getattr(ImageDraw.Draw(canvas), method)(pts, fill=255)
        small = canvas.resize((image_size, image_size), Image.Resampling.BOX)
        box = small.getbbox()
        masks[position, size, kind] = (box[:2], small.crop(box))
    return masks


def bbox(obj: Shape, image_size: int) -> list[int]:
    """[x0, y0, x1, y1] (x1, y1 exclusive) of the pixels the object touches."""
    (x0, y0), mask = _coverage(image_size)[obj.position, obj.size, obj.shape]
    return [x0, y0, x0 + mask.width, y0 + mask.height]


def render(scene: Scene, image_size: int) -> Image.Image:
    """Paste each object's colour through its coverage mask onto the background (objects never overlap)."""
    masks = _coverage(image_size)
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    for obj in scene:
        corner, mask = masks[obj.position, obj.size, obj.shape]
        img.paste(COLORS[obj.color], (*corner, corner[0] + mask.width, corner[1] + mask.height), mask)
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ language
def _at(position: str, style: int) -> str:
    if position == "center":
        return "in the center" if style == 0 else "in the middle"
    return f"at the {position}" if style == 0 else f"in the {position} corner"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _count_phrase(n: int) -> str:
    return f"{_NUMBERS[n]} shape{'s' if n > 1 else ''}"


def captions(scene: Scene) -> list[str]:
    """Five paraphrases; each names every object's size, colour, kind and position."""
    plain = [f"a {o.noun} {_at(o.position, 0)}" for o in scene]
    corner = [f"a {o.noun} {_at(o.position, 1)}" for o in scene]
    n = len(scene)
    return [
        _join(plain),
        f"there {'are' if n > 1 else 'is'} {_count_phrase(n)}: {_join(plain)}",
        f"an image of {_join(corner)}",
        f"{_join(corner[::-1])} on a plain background",
        f"a picture with {_count_phrase(n)}, " + _join(
            [f"{o.color} {o.shape} ({o.size}) {_at(o.position, 0)}" for o in scene]
        ),
    ]


def questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(question, answer, type) triples whose answers follow from the scene."""
    qa = [("how many shapes are there?", str(len(scene)), "count")]
    for o in scene:
        where = _at(o.position, 0)
        qa.append((f"what color is the shape {where}?", o.color, "color"))
        qa.append((f"what shape is {where}?", o.shape, "shape"))
        qa.append((f"what size is the {o.color} {o.shape} {where}?", o.size, "size"))
        if sum(x.noun == o.noun for x in scene) == 1:  # "where is X?" only when X is unique
            qa.append((f"where is the {o.noun}?", o.position, "position"))
    colors, kinds = list(COLORS), list(KINDS)
    probe = scene[rng.integers(len(scene))] if rng.random() < 0.5 else None
    color = probe.color if probe else colors[rng.integers(len(colors))]
    kind = probe.shape if probe else kinds[rng.integers(len(kinds))]
    present = any(o.color == color and o.shape == kind for o in scene)
    article = "an" if color[0] in "aeiou" else "a"
    qa.append((f"is there {article} {color} {kind}?", "yes" if present else "no", "exists"))
    color = colors[rng.integers(len(colors))]
    qa.append((f"how many {color} shapes are there?", str(sum(o.color == color for o in scene)), "count"))
    return qa


# ------------------------------------------------------------------------------------------------- dataset
def features(negative_captions: bool = False):
    import datasets

    obj = {
        "color": datasets.Value("string"),
        "shape": datasets.Value("string"),
        "size": datasets.Value("string"),
        "position": datasets.Value("string"),
        "bbox": datasets.List(datasets.Value("int32"), length=4),
    }
    strings = datasets.List(datasets.Value("string"))
    columns = {
        "image": datasets.Image(),
        "captions": strings,
        "questions": strings,
        "answers": datasets.List(strings),
        "question_types": strings,
        "objects": datasets.List(obj),
    }
    if negative_captions:
        columns["negative_captions"] = strings
    return datasets.Features(columns)


def build(p: ShapesParams):
    """Build the dataset in memory (the registry caches it on disk)."""
    import datasets

    scenes = sample_scenes(p)
    qa_rng = np.random.default_rng([p.seed, list(SPLIT_BUCKETS).index(p.split), 1])
    columns: dict[str, list] = {name: [] for name in features(p.negative_captions)}
    negative_rng = np.random.default_rng([p.seed, list(SPLIT_BUCKETS).index(p.split), 2])
    for scene in scenes:
        if p.negative_captions:
            columns["negative_captions"].append(negative_captions(scene, negative_rng))
        qa = questions(scene, qa_rng)
        columns["image"].append({"bytes": _png(render(scene, p.image_size)), "path": None})
        columns["captions"].append(captions(scene))
        columns["questions"].append([q for q, _, _ in qa])
        columns["answers"].append([[a] * NUM_ANNOTATORS for _, a, _ in qa])
        columns["question_types"].append([t for _, _, t in qa])
        columns["objects"].append(
            [
                {"color": o.color, "shape": o.shape, "size": o.size, "position": o.position,
                 "bbox": bbox(o, p.image_size)}
                for o in scene
            ]
        )
    info = datasets.DatasetInfo(description=__doc__.splitlines()[0], features=features(p.negative_captions))
    return datasets.Dataset.from_dict(columns, info=info, split=p.split)


# ------------------------------------------------------------------------------ scene knowledge for evaluation
ATTRIBUTES = ("color", "shape", "size", "position")  # what a minimal pair changes (one attribute of one object)
_CHOICES = {"color": tuple(COLORS), "shape": KINDS, "size": tuple(SIZES), "position": tuple(POSITIONS)}


def scene_from_objects(objects: list[dict]) -> Scene:
    """The scene of a dataset row's ``objects`` column (dicts with color, shape, size, position)."""
    try:
        objs = [Shape(o["position"], o["size"], o["color"], o["shape"]) for o in objects]
    except (KeyError, TypeError) as err:
        raise DataError(
            f"shapes: objects must be dicts with color, shape, size and position (the built-in `shapes` objects "
            f"column); got {objects!r:.200}"
        ) from err
    return tuple(sorted(objs, key=lambda o: _POS_ORDER[o.position]))


def minimal_pair(scene: Scene, rng: np.random.Generator, attribute: str | None = None) -> tuple[str, Scene]:
    """``(attribute, scene')``: the scene with one attribute of one object changed (colour, shape, size, or position
    moved to a free spot), so its caption differs from the scene's in exactly one word group. ``attribute`` None
    draws one among those that can change (position needs a free spot)."""
    free = [p for p in POSITIONS if all(o.position != p for o in scene)]
    allowed = [a for a in ATTRIBUTES if a != "position" or free]
    if attribute is None:
        attribute = allowed[rng.integers(len(allowed))]
    elif attribute not in allowed:
        raise ValueError(f"minimal_pair: attribute {attribute!r} cannot change in scene {scene_key(scene)!r}; "
                         f"choose one of {allowed}")
    index = int(rng.integers(len(scene)))
    obj = scene[index]
    current = getattr(obj, attribute)
    choices = free if attribute == "position" else [c for c in _CHOICES[attribute] if c != current]
    changed = Shape(**{**obj.__dict__, attribute: choices[rng.integers(len(choices))]})
    objs = list(scene[:index]) + [changed] + list(scene[index + 1:])
    return attribute, tuple(sorted(objs, key=lambda o: _POS_ORDER[o.position]))


def negative_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """For each attribute that can change in ``scene``, one :func:`minimal_pair` of it, as a random paraphrase."""
    out = []
    for attribute in ATTRIBUTES:
        if attribute == "position" and len(scene) == len(POSITIONS):
            continue  # no free spot to move to
        paraphrases = captions(minimal_pair(scene, rng, attribute)[1])
        out.append(paraphrases[rng.integers(len(paraphrases))])
    return out


_OBJECT_PATTERNS = [
    # "small red circle at the top left" / "... in the top left corner" / "... in the center" / "in the middle"
    re.compile(r"\b(?P<size>small|large) (?P<color>[a-z]+) (?P<shape>circle|square|triangle) "
               r"(?:at the|in the) (?P<position>top left|top right|bottom left|bottom right|center|middle)\b"),
    # "red circle ( small ) at the top left"
    re.compile(r"\b(?P<color>[a-z]+) (?P<shape>circle|square|triangle) \( (?P<size>small|large) \) "
               r"(?:at the|in the) (?P<position>top left|top right|bottom left|bottom right|center|middle)\b"),
]


def _normalise_text(text: str) -> str:
    """Lower case, punctuation as separate words, single spaces (decoded wordpiece text spaces punctuation)."""
    text = re.sub(r"([(),:.])", r" \1 ", text.lower())
    return " ".join(text.split())


def parse_caption(text: str) -> frozenset[Shape] | None:
    """The objects a caption describes (any of the five paraphrase styles), or None when it names two objects at
    one position or an unknown colour."""
    found: dict[str, Shape] = {}
    norm = _normalise_text(text)
    for pattern in _OBJECT_PATTERNS:
        for m in pattern.finditer(norm):
            position = "center" if m["position"] == "middle" else m["position"]
            if m["color"] not in COLORS or position in found:
                return None
            found[position] = Shape(position, m["size"], m["color"], m["shape"])
        if found:
            break
    return frozenset(found.values())


def describes_scene(text: str, scene: Scene) -> bool:
    """True when ``text`` names exactly the scene's objects: every colour, shape, size and position, nothing more."""
    return parse_caption(text) == frozenset(scene)
