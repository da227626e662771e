"""Step 3 of an export: copy the images and publish the manifests, to S3 or as a zip.

On S3 a manifest is uploaded under a temporary key and copied to its final key only when every
image and every manifest is in place, so a crash never leaves a partial manifest at the final key.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from django.core.files.storage import default_storage

from .collect import read_work
from .rules import IMAGE_FORMATS, image_extension, image_key, join_key, s3_location

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same data gives the same zip


def images(work_path: Path) -> Iterator[tuple[str, str]]:
    """(stored name, key relative to the export prefix) for every exported image."""
    with work_path.open(encoding="utf-8") as work:
        for item_id, name, extension, _classes, _line in read_work(work):
            yield json.loads(name), image_key(int(item_id), extension)



def publish_s3(client, url: str, manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]]) -> list[str]:
    """Copy the images, upload each manifest under a temporary key, then publish: copy every
    manifest to its final key and delete the temporary one. Returns the final manifest URLs."""
    bucket, prefix = s3_location(url)
    for name, key in image_keys:
        with default_storage.open(name, "rb") as handle:
            client.put_object(Bucket=bucket, Key=join_key(prefix, key), Body=handle,
                              ContentType=IMAGE_FORMATS[image_extension(key)])
    token = uuid.uuid4().hex
    staged = {set_name: join_key(prefix, f".{set_name}.manifest.{token}.tmp") for set_name in manifests}
    try:
        for set_name, path in manifests.items():
            with path.open("rb") as handle:
                client.put_object(Bucket=bucket, Key=staged[set_name], Body=handle, ContentType="application/json")
        published = []
        for set_name, temporary in staged.items():
            final = join_key(prefix, f"{set_name}.manifest")
            client.copy_object(Bucket=bucket, Key=final, CopySource={"Bucket": bucket, "Key": temporary},
                               ContentType="application/json", MetadataDirective="REPLACE")
            published.append(f"s3://{bucket}/{final}")
        return published
    finally:
        for temporary in staged.values():
            try:
                client.delete_object(Bucket=bucket, Key=temporary)
            except Exception:  # best effort: a leftover temporary key is harmless, never read
                pass


def write_zip(destination: IO[bytes], manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]],
              report_data: dict) -> None:
    """A zip laid out like the S3 prefix: ``train.manifest``, ``test.manifest``, ``images/<id>.jpg``
    and ``export-report.json``. Upload its contents to the source-ref prefix as they are."""
    with zipfile.ZipFile(destination, "w") as archive:
        for set_name, path in manifests.items():
            info = zipfile.ZipInfo(f"{set_name}.manifest", ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                copy_stream(source, target)
        info = zipfile.ZipInfo("export-report.json", ZIP_DATE)
        archive.writestr(info, json.dumps(report_data, indent=1, ensure_ascii=False), zipfile.ZIP_DEFLATED)
        for name, key in image_keys:
            info = zipfile.ZipInfo(key, ZIP_DATE)  # JPEG/PNG are compressed already: stored
            with default_storage.open(name, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                copy_stream(source, target)


def write_local_zip(path: Path, manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]],
                    report_data: dict) -> Path:
    """``write_zip`` to a file, atomically: a crash leaves no half-written zip at ``path``."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with partial.open("wb") as handle:
            write_zip(handle, manifests, image_keys, report_data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def copy_stream(source: IO[bytes], target: IO[bytes], size: int = 1024 * 1024) -> None:
    while chunk := source.read(size):
        target.write(chunk)

