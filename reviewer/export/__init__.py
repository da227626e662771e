"""Rekognition Custom Labels manifests from a project's labelled items.

An export runs in three steps, all streaming (memory does not grow with the number of items):

1. ``collect``: walk the items in id order, check every per-image rule, and write each good item's
   finished manifest line to a local work file; an item that breaks a rule becomes a ``Problem``
   (listed in the report, never silently dropped).
2. ``split``: read the work file back and deal the lines into ``train.manifest`` and
   ``test.manifest`` (local temporary files), then check the dataset rules. Failing them raises
   ``ExportFailed`` with the report: nothing has been written to the target yet.
3. ``publish_s3`` or ``write_zip``: copy the images and publish the manifests. On S3 a manifest is
   uploaded under a temporary key and copied to its final key only when every image and every
   manifest is in place, so a crash never leaves a partial manifest at the final key.

The rules are the published ones (docs/export.md lists them with their sources).

Modules: ``rules`` (per-item rules, the manifest line), ``collect`` (step 1), ``split`` (step 2 and
the dataset rules), ``publish`` (step 3), ``runs`` (an ``Export`` row queued, run by the worker,
its outcome recorded).
"""
