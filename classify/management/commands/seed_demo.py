from __future__ import annotations

import io

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from PIL import Image

from classify.models import Label, Project
from classify.services import intake, projects

# scikit-image ships these photographs; the demo needs nothing from the network.
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "camera", "hubble_deep_field",
          "retina", "brick", "grass", "immunohistochemistry"]
MAPPINGS = {
    "cat": ["tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"],
    "coffee": ["espresso", "cup", "coffee mug", "coffeepot"],
    "rocket": ["missile", "projectile, missile", "space shuttle"],
}


class Command(BaseCommand):
    help = "Create a 'demo' project (cat, coffee, rocket) and upload scikit-image's sample photos to it."

    def handle(self, *args, **options) -> None:
        if Project.objects.filter(slug="demo").exists():
            self.stdout.write("Demo project exists already.")
            return
        admin = get_user_model().objects.filter(is_superuser=True).first()
        project = projects.create_project(slug="demo", name="Demo", labels=list(MAPPINGS), created_by=admin)
        for name, classes in MAPPINGS.items():
            # No unannounced auto-accept checks in the demo: what a newcomer sees should not vary.
            Label.objects.filter(project=project, name=name).update(mappings={"local": classes}, accept_threshold=0.6,
                                                                    audit_rate=0)
        count = 0
        for photo, data in sample_photos():
            intake.ingest_upload(project=project, data=data, filename=f"{photo}.png", uploaded_by=admin)
            count += 1
        self.stdout.write(self.style.SUCCESS(f"Demo project created with {count} photos queued."))


def sample_photos():
    from skimage import data as samples  # heavy, and only this command needs it

    for name in PHOTOS:
        loader = getattr(samples, name, None)
        if loader is None:
            continue
        try:
            pixels = np.asarray(loader())
        except Exception:  # a sample that would need a download: skip it
            continue
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        yield name, buffer.getvalue()
