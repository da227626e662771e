"""The lower level that classification, the bake-off and retraining share: a project's classes as
the backends see them, the project's backend built with its active model, a stored image loaded."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from classify import aws
from classify.backends import ClassSpec, ModelArtifact, get_backend
from classify.images import remember_source
from classify.models import Exemplar, Item, Label, ModelVersion, Project


def class_specs(project: Project, labels: Sequence[Label], *, backend: str = "") -> list[ClassSpec]:
    return [
        ClassSpec(
            name=label.name, is_unknown=label.is_unknown, description=label.description,
            mapping=_mapping(label.mappings.get(backend or project.backend, ())),
        )
        for label in labels
    ]


def _mapping(value) -> tuple[str, ...]:
    """A class's names for a backend: a list, or one name given as a plain string."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(name) for name in value or ())


def build_backend(project: Project, labels: Sequence[Label], *, name: str = "", config: dict | None = None):
    """A backend for the project: by default as configured right now; ``name``/``config`` pin the
    one an item started with. The active fitted model of that backend comes along, if any."""
    name = name or project.backend
    config = project.backend_config if config is None else config
    config = {key: value for key, value in config.items() if key != "s3_prefixes"}
    if config.get("invocation") == "async":  # it stages data on S3: only under the project's own prefixes
        config["s3_prefixes"] = aws.project_s3_prefixes(project)
    active = ModelVersion.objects.filter(project=project, backend=name, is_active=True).first()
    model = ModelArtifact(version=active.version, data=bytes(active.artifact)) if active else None
    return get_backend(name, classes=class_specs(project, labels, backend=name), config=config, model=model)


def load_image(item: Item | Exemplar, *, min_side: int | None = None) -> Image.Image:
    """The stored derivative as RGB. With ``min_side`` (a backend that shrinks images anyway), a
    JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg, never below ``min_side`` on either side."""
    with item.image.open("rb") as handle:
        data = handle.read()
    image = Image.open(io.BytesIO(data))
    if min_side:
        image.draft("RGB", (min_side, min_side))
    image.load()
    if image.mode != "RGB":
        return image.convert("RGB")
    return image if min_side else remember_source(image, data)
