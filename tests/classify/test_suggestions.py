"""Class-name suggestions for new projects: the ImageNet classes under each name's WordNet synset,
read from the shipped classify/backends/data/imagenet_hierarchy.json."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from classify.backends.imagenet import HIERARCHY_FILE, imagenet_classes, suggest
from classify.models import Project

WORDNET = Path("/usr/share/wordnet")


def under(wnid_prefix_classes: range) -> set[str]:
    return {imagenet_classes()[i] for i in wnid_prefix_classes}


DOG_BREEDS = under(range(151, 269))  # Chihuahua … Mexican hairless: ImageNet's domestic dogs


@pytest.mark.django_db
class CreateProjectMappingTests:
    def test_every_class_of_a_new_project_gets_a_sensible_mapping(self):
        out, err = io.StringIO(), io.StringIO()
        call_command("create_project", "pets", "--labels", "bird,dog,horse,flower,motorcycle,airplane,person,tree",
                     stdout=out, stderr=err)
        mappings = {label.name: set(label.mappings["local"])
                    for label in Project.objects.get(slug="pets").labels.filter(is_unknown=False)}
        assert all(mappings.values()), mappings
        by_short = {name: {c.split(",")[0] for c in classes} for name, classes in mappings.items()}
        assert {"ostrich", "bald eagle", "goldfinch", "hen", "king penguin", "toucan"} <= by_short["bird"]
        assert len(mappings["bird"]) == 59 and not by_short["bird"] & {"airliner", "kite (toy)", "tench"}
        assert mappings["dog"] == DOG_BREEDS and len(DOG_BREEDS) == 118
        assert by_short["horse"] == {"sorrel"}  # no hippopotamus (river horse), horse cart or horse chestnut
        assert by_short["flower"] == {"daisy", "yellow lady's slipper"}
        assert by_short["motorcycle"] == {"moped"}
        assert by_short["airplane"] == {"airliner", "wing"}  # not the carpenter's plane
        assert by_short["person"] == {"ballplayer", "groom", "scuba diver"}
        assert "acorn" in by_short["tree"] and not by_short["tree"] & {"tree frog", "treefrog"}
        text = out.getvalue()
        assert "bird: 59 ImageNet classes under bird.n.01" in text
        assert "tree: No ImageNet class is a kind of tree.n.01" in text  # only parts of trees: flagged
        assert err.getvalue() == ""  # every class has a mapping

    def test_a_class_without_a_mapping_is_called_out_with_the_fix(self):
        out, err = io.StringIO(), io.StringIO()
        call_command("create_project", "sites", "--labels", "temple,church", stdout=out, stderr=err)
        assert "temple: No ImageNet class matches “temple”: choose ImageNet classes" in out.getvalue()
        assert "No ImageNet mapping for temple" in err.getvalue()
        assert "add exemplars" in err.getvalue()
        assert Project.objects.get(slug="sites").labels.get(name="church").mappings["local"] == ["church, church building"]


class SuggestTests:
    def test_the_most_frequent_sense_with_classes_wins(self):
        assert suggest("plane").synset == "airplane.n.01"
        assert suggest("crane").coverage == "kinds"

    def test_plurals_case_and_spacing_find_the_lemma(self):
        assert suggest("Birds").classes == suggest("bird").classes
        assert suggest("geese").synset == "goose.n.01"
        assert suggest("  golden   retriever ").classes == ("golden retriever",)
        assert suggest("buses").synset == "bus.n.01"

    def test_words_inside_other_class_names_do_not_match(self):
        assert suggest("frog").classes and "tree frog, tree-frog" in suggest("frog").classes
        assert "tree frog, tree-frog" not in suggest("tree").classes
        assert suggest("river").coverage == "none"  # "river horse" is a hippopotamus, not a river

    def test_the_hint_says_what_is_covered(self):
        assert suggest("car").hint.startswith("10 ImageNet classes under car.n.01 (a motor vehicle with four wheels): "
                                              "ambulance, beach wagon, cab, convertible and 6 more; and 2 parts of one")
        assert suggest("temple").hint == ("No ImageNet class matches “temple”: choose ImageNet classes for it in "
                                          "the admin, or add exemplars.")
        assert suggest("").coverage == "none"


class ShippedFileTests:
    def test_it_covers_the_thousand_classes_in_imagenet_order(self):
        data = json.loads(HIERARCHY_FILE.read_text(encoding="utf-8"))
        wnids = [row["wnid"] for row in data["classes"]]
        assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
        entity = next(i for i, synset in enumerate(data["synsets"]) if synset[1] == "entity.n.01")
        assert all(entity in row["kind_of"] for row in data["classes"])

    @pytest.mark.skipif(not (WORDNET / "data.noun").exists(), reason="WordNet 3.0 not installed (apt-get install wordnet-base)")
    def test_it_is_what_the_generator_builds_from_wordnet(self):
        import importlib.util

        path = Path(__file__).resolve().parents[2] / "bin" / "build_imagenet_hierarchy.py"
        spec = importlib.util.spec_from_file_location("build_imagenet_hierarchy", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.dumps(module.build(WORDNET)) == HIERARCHY_FILE.read_text(encoding="utf-8")
