"""The 1000 ImageNet-1k class names and the WordNet hierarchy above them (no torch import, so the
web process can use them): suggestions of ImageNet classes for a project's class names."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLASSES_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"
NUM_CLASSES = 1000


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """Return the class names; index i is logit i of the ImageNet models.

    The two "crane" classes are disambiguated as "crane (bird)" and "crane (machine)" so that
    names are unique keys.
    """
    names = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{CLASSES_FILE} has {len(names)} lines, expected {NUM_CLASSES}")
    return tuple(names)


# --- Class-name suggestions from the WordNet hierarchy ----------------------------------------

HIERARCHY_FILE = Path(__file__).parent / "data" / "imagenet_hierarchy.json"
# WordNet's regular noun endings (its "morphy" rules), tried when a name is not a lemma as typed.
PLURAL_ENDINGS = (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("zes", "z"), ("ses", "s"),
                  ("men", "man"), ("s", ""))
SHOWN_IN_HINT = 4


@dataclass(frozen=True)
class Suggestion:
    """The ImageNet classes suggested for one project class, and why.

    ``classes`` holds kinds of the matched WordNet synset first (``kinds`` of them, in ImageNet
    order), then the classes that are parts of one (a wing of an airplane, an acorn of a tree).
    """

    label: str
    classes: tuple[str, ...] = ()
    kinds: int = 0
    synset: str = ""
    gloss: str = ""

    @property
    def parts(self) -> int:
        return len(self.classes) - self.kinds

    @property
    def coverage(self) -> str:
        """``kinds`` (the hierarchy has classes of this kind), ``parts`` (only parts of one: check
        them) or ``none`` (nothing: choose ImageNet classes or add exemplars)."""
        return "kinds" if self.kinds else "parts" if self.classes else "none"

    @property
    def hint(self) -> str:
        if self.coverage == "none":
            return (f"No ImageNet class matches “{self.label}”: choose ImageNet classes for it in the admin, "
                    "or add exemplars.")
        kinds, parts = self.classes[: self.kinds], self.classes[self.kinds:]
        if not self.synset:
            return f"{_count(self.classes, 'ImageNet class', 'ImageNet classes')} chosen in the admin: {_names(self.classes)}."
        if self.coverage == "parts":
            return (f"No ImageNet class is a kind of {self.synset} ({self.gloss}); {_count(parts, 'is a part', 'are parts')} "
                    f"of one: {_names(parts)}. Check them, or add exemplars.")
        text = f"{_count(kinds, 'ImageNet class', 'ImageNet classes')} under {self.synset} ({self.gloss}): {_names(kinds)}"
        return text + (f"; and {_count(parts, 'part', 'parts')} of one: {_names(parts)}." if parts else ".")


def _count(items, one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def _names(classes: Sequence[str]) -> str:
    shown = ", ".join(short_name(name) for name in classes[:SHOWN_IN_HINT])
    return shown + (f" and {len(classes) - SHOWN_IN_HINT} more" if len(classes) > SHOWN_IN_HINT else "")


def short_name(name: str) -> str:
    """The first synonym of an ImageNet class ("ostrich, Struthio camelus" → "ostrich")."""
    return name.split(",")[0]


@dataclass(frozen=True)
class _Hierarchy:
    synsets: list[list]
    lemmas: dict[str, list[int]]
    plurals: dict[str, str]
    kinds: dict[int, list[int]]  # synset → class indices that are kinds of it
    parts: dict[int, list[int]]  # synset → class indices that are parts of one


@functools.cache
def _hierarchy() -> _Hierarchy:
    data = json.loads(HIERARCHY_FILE.read_text(encoding="utf-8"))
    kinds: dict[int, list[int]] = {}
    parts: dict[int, list[int]] = {}
    for index, row in enumerate(data["classes"]):
        for synset in row["kind_of"]:
            kinds.setdefault(synset, []).append(index)
        for synset in row["part_of"]:
            parts.setdefault(synset, []).append(index)
    return _Hierarchy(data["synsets"], data["lemmas"], data["plurals"], kinds, parts)


def _lemma_keys(label: str) -> list[str]:
    """How a typed class name may appear among WordNet's lemmas: as typed, with hyphens or
    spaces swapped, then singular (irregular plurals first, then the regular endings)."""
    typed = " ".join(label.replace("_", " ").split()).lower()
    spellings = list(dict.fromkeys([typed, typed.replace("-", " "), typed.replace(" ", "-"), typed.replace(" ", "")]))
    plurals = _hierarchy().plurals
    singulars = [plurals[key] for key in spellings if key in plurals]
    for key in spellings:
        singulars += [key[: -len(end)] + base for end, base in PLURAL_ENDINGS if key.endswith(end) and len(key) > len(end) + 1]
    return list(dict.fromkeys(spellings + singulars))


def suggest(label: str) -> Suggestion:
    """The ImageNet classes a project class called ``label`` most likely means.

    The name is looked up among WordNet's noun lemmas; of its senses (most frequent first) the
    first with ImageNet classes of its kind is taken ("bird" → every class under bird.n.01,
    "plane" → airplane.n.01, not the carpenter's plane), else the first with classes that are
    parts of one. Words inside other class names never match ("horse" is not "river horse").
    """
    hierarchy = _hierarchy()
    names = imagenet_classes()
    for key in _lemma_keys(label):
        senses = hierarchy.lemmas.get(key)
        if not senses:
            continue
        chosen = next((s for s in senses if s in hierarchy.kinds), None)
        if chosen is None:
            chosen = next((s for s in senses if s in hierarchy.parts), None)
        if chosen is None:
            continue
        kinds = hierarchy.kinds.get(chosen, [])
        parts = [index for index in hierarchy.parts.get(chosen, []) if index not in kinds]
        _, synset, gloss, _ = hierarchy.synsets[chosen]
        return Suggestion(label=label, classes=tuple(names[i] for i in kinds + parts), kinds=len(kinds),
                          synset=synset, gloss=gloss)
    return Suggestion(label=label)


def describe_mapping(label: str, chosen: Sequence[str]) -> Suggestion:
    """What a class's current ImageNet mapping covers: the suggestion's own wording when the
    mapping is still the suggestion, else the classes an admin chose (or none)."""
    suggested = suggest(label)
    if tuple(chosen) == suggested.classes:
        return suggested
    return Suggestion(label=label, classes=tuple(chosen), kinds=len(chosen))
