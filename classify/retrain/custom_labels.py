"""The Rekognition Custom Labels training workflow, one short step per function.

Each step makes one or two API calls and keeps what it learnt in ``run.aws`` (ARNs, statuses), so
a step can be run again after a worker restart. Waiting is polling: a step that finds AWS still
busy returns ``Wait`` and the task comes back after a backoff (no blocking waiter holds a worker).
All calls go through ``classify.aws`` (one lazily created client, errors translated into
``BackendError`` with a retry flag).
"""

from __future__ import annotations

import json

from classify import aws
from classify.backends.base import BackendError
from classify.models import CloudResource, ModelVersion, Project, TrainingRun
from classify.services import hosting

from .outcomes import Done, StepFailed, Wait

SERVICE = "rekognition"


LOCATIONS = (("train_manifest", "train manifest", True), ("test_manifest", "test manifest", True),
             ("output_location", "output location", False))


def project_name(project: Project) -> str:
    """The Rekognition project a Loupe project trains in: named from the slug, never typed."""
    return f"loupe-{project.slug}"


def confined(run: TrainingRun, uri: str, *, what: str, key_required: bool = True) -> tuple[str, str]:
    """``aws.confine_s3`` for a step: a location outside the project's own prefix (or that does not
    parse) fails the run, saying where it may be, before Loupe's credentials touch it."""
    try:
        return aws.confine_s3(uri, project=run.project, what=what, key_required=key_required)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None


def _client(run: TrainingRun, service: str = SERVICE):
    return aws.lazy_client(service, run.region or None)


def _call(run: TrainingRun, operation: str, **params) -> dict:
    client = _client(run)
    return aws.call(SERVICE, getattr(client, operation), **params)


def ensure_project(run: TrainingRun) -> Done:
    """The run's Rekognition project: ``loupe-<slug>``, created and recorded (``CloudResource``) the
    first time; reused, its old datasets replaced, only while it is the one recorded for this
    project. A project of that name Loupe did not create for this project is never reused,
    changed or deleted: the run stops, saying so. Every S3 location of the run is checked first."""
    for field, what, key_required in LOCATIONS:
        confined(run, getattr(run, field), what=what, key_required=key_required)
    name = run.rekognition_project = project_name(run.project)
    region = _client(run).meta.region_name or ""
    record = CloudResource.objects.filter(kind=CloudResource.Kind.REKOGNITION_PROJECT, region=region, name=name).first()
    found = _call(run, "describe_projects", ProjectNames=[name]).get("ProjectDescriptions") or []
    if found and (record is None or record.project_id != run.project_id or record.arn != found[0]["ProjectArn"]):
        raise StepFailed(f"A Rekognition project named {name} exists in {region} that Loupe did not create for this "
                         "project, so Loupe will not reuse, change or delete it. Delete or rename it in the "
                         "Rekognition console (after keeping what you need), then start a new run.")
    if found:
        return _reuse(run, found[0])
    if record is not None and record.project_id != run.project_id:
        raise StepFailed(f"The name {name} is recorded for another Loupe project; Loupe will not take it over.")
    if record is not None:
        record.delete()  # deleted outside Loupe since: forget it, and create it again
    response = _call(run, "create_project", ProjectName=name, Feature="CUSTOM_LABELS")
    run.aws["project_arn"] = response["ProjectArn"]
    CloudResource.objects.create(project=run.project, kind=CloudResource.Kind.REKOGNITION_PROJECT, region=region,
                                 name=name, arn=response["ProjectArn"])
    return Done(f"Created project {name}.")


def _reuse(run: TrainingRun, found: dict) -> Done:
    """Loupe's own project for this Loupe project: the new manifests replace its datasets."""
    run.aws["project_arn"] = found["ProjectArn"]
    existing = {d["DatasetType"]: d["DatasetArn"] for d in found.get("Datasets") or []}
    for arn in existing.values():  # a project holds one TRAIN and one TEST dataset
        _call(run, "delete_dataset", DatasetArn=arn)
    if existing:
        return Done(f"Reusing project {run.rekognition_project}; deleted its old datasets "
                    f"({', '.join(sorted(existing))}).")
    return Done(f"Reusing project {run.rekognition_project}.")


def create_datasets(run: TrainingRun) -> Done | Wait:
    """A TRAIN and a TEST dataset from the exported manifests (each created once, even if re-run)."""
    for kind, uri in (("TRAIN", run.train_manifest), ("TEST", run.test_manifest)):
        key = f"{kind.lower()}_dataset_arn"
        if key in run.aws:
            continue
        bucket, name = confined(run, uri, what=f"{kind.lower()} manifest")
        check_source_refs(run, bucket, name, what=f"{kind.lower()} manifest")
        try:
            response = _call(run, "create_dataset", ProjectArn=run.aws["project_arn"], DatasetType=kind,
                             DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": name}}})
        except BackendError as exc:
            if "ResourceInUseException" in str(exc):  # the old dataset is still being deleted
                return Wait(f"{kind} dataset: the project is busy ({exc}).")
            raise
        run.aws[key] = response["DatasetArn"]
        run.save(update_fields=["aws", "updated_at"])  # kept at once: a crash here must not create it twice
    return Done("Created the TRAIN and TEST datasets from the manifests.")


def check_source_refs(run: TrainingRun, bucket: str, key: str, *, what: str) -> None:
    """Every image a manifest names lies in the project's own prefix too: Rekognition reads them
    with Loupe's credentials, so a manifest placed in the prefix by hand must not reach another
    project's images. (A line without a source-ref names no image; Rekognition judges its format.)"""
    s3 = _client(run, "s3")
    body = aws.call("s3", s3.get_object, Bucket=bucket, Key=key)["Body"]
    for number, line in enumerate(body.iter_lines(), start=1):
        try:
            ref = json.loads(line).get("source-ref") if line.strip() else None
        except (ValueError, AttributeError):
            continue
        if ref is not None:
            confined(run, str(ref), what=f"source-ref on line {number} of the {what}")


def wait_for_datasets(run: TrainingRun) -> Done | Wait:
    """Until both datasets are CREATE_COMPLETE; CREATE_FAILED ends the run with Rekognition's reason."""
    pending = []
    for kind in ("train", "test"):
        if run.aws.get(f"{kind}_dataset_status") == "CREATE_COMPLETE":
            continue
        description = _call(run, "describe_dataset", DatasetArn=run.aws[f"{kind}_dataset_arn"])["DatasetDescription"]
        status = description.get("Status", "")
        run.aws[f"{kind}_dataset_status"] = status
        if status == "CREATE_FAILED":
            code = description.get("StatusMessageCode")
            raise StepFailed(f"The {kind.upper()} dataset could not be created: "
                             f"{description.get('StatusMessage') or 'no reason given'}" + (f" ({code})" if code else ""))
        if status == "CREATE_COMPLETE":
            run.aws[f"{kind}_dataset_stats"] = description.get("DatasetStats") or {}
        else:
            pending.append(f"{kind.upper()} {status or 'unknown'}")
    if pending:
        return Wait(f"Datasets not ready: {', '.join(pending)}.")
    stats = {kind: run.aws[f"{kind}_dataset_stats"] for kind in ("train", "test")}
    return Done("Datasets ready: " + "; ".join(
        f"{kind.upper()} {s.get('LabeledEntries', '?')} labelled images, {s.get('ErrorEntries', 0)} invalid"
        for kind, s in stats.items()))


def start_training(run: TrainingRun) -> Done:
    bucket, prefix = confined(run, run.output_location, what="output location", key_required=False)
    response = _call(run, "create_project_version", ProjectArn=run.aws["project_arn"], VersionName=run.version_name,
                     OutputConfig={"S3Bucket": bucket, "S3KeyPrefix": prefix})
    run.aws["project_version_arn"] = response["ProjectVersionArn"]
    return Done(f"Training started: model version {run.version_name}.")


def _describe_version(run: TrainingRun) -> dict:
    response = _call(run, "describe_project_versions", ProjectArn=run.aws["project_arn"],
                     VersionNames=[run.version_name])
    found = response.get("ProjectVersionDescriptions") or []
    if not found:
        raise StepFailed(f"Rekognition does not know the model version {run.version_name!r}.")
    return found[0]


def wait_for_training(run: TrainingRun) -> Done | Wait:
    """Until TRAINING_COMPLETED (keep the evaluation's location) or TRAINING_FAILED (the reason)."""
    description = _describe_version(run)
    status = description.get("Status", "")
    if status == "TRAINING_FAILED":
        raise StepFailed(f"Training failed: {description.get('StatusMessage') or 'no reason given'}")
    if status != "TRAINING_COMPLETED":
        return Wait(f"Training: {status or 'unknown'}.")
    evaluation = description.get("EvaluationResult") or {}
    run.aws["f1"] = evaluation.get("F1Score")
    run.aws["summary"] = (evaluation.get("Summary") or {}).get("S3Object") or {}
    run.aws["billable_training_seconds"] = description.get("BillableTrainingTimeInSeconds")
    return Done(f"Training completed: F1 {run.aws['f1']}.")


def read_evaluation(run: TrainingRun) -> Done:
    """F1 and per-label precision/recall/F1/assumed threshold from the evaluation summary file in
    S3; the model version is stored (inactive) with them."""
    location = run.aws.get("summary") or {}
    if not location.get("Bucket") or not location.get("Name"):
        raise StepFailed("Training completed without an evaluation summary file: cannot measure the model.")
    s3 = _client(run, "s3")
    body = aws.call("s3", s3.get_object, Bucket=location["Bucket"], Key=location["Name"])["Body"].read()
    try:
        summary = json.loads(body)
    except ValueError as exc:
        raise StepFailed(f"The evaluation summary s3://{location['Bucket']}/{location['Name']} is not JSON: {exc}") from None
    run.metrics = summary_metrics(summary, f1=run.aws.get("f1"))
    details = summary.get("EvaluationDetails") or {}
    run.candidate, _ = ModelVersion.objects.update_or_create(  # a re-run after a crash finds it
        project=run.project, backend="custom_labels", version=run.version_name[:100],
        defaults={"config": {"project_version_arn": run.aws["project_version_arn"]},
                  "classes": details.get("Labels") or [], "n_train": details.get("NumberOfTrainingImages") or 0,
                  "n_test": details.get("NumberOfTestingImages") or 0, "f1": run.metrics["f1"],
                  "metrics": run.metrics, "note": f"Training run #{run.pk}; not active until approved."},
    )
    return Done(f"Evaluation read: F1 {run.metrics['f1']:.3f} over {len(run.metrics['per_class'])} labels.")


def summary_metrics(summary: dict, *, f1: float | None) -> dict:
    """Custom Labels' summary file as Loupe's metrics (the same keys as a local evaluation)."""
    aggregated = summary.get("AggregatedEvaluationResults") or {}
    per_class = {}
    for result in summary.get("LabelEvaluationResults") or []:
        metrics = result.get("Metrics") or {}
        per_class[result["Label"]] = {
            "precision": metrics.get("Precision"), "recall": metrics.get("Recall"), "f1": metrics.get("F1Score"),
            "threshold": metrics.get("Threshold"), "support": result.get("NumberOfTestingImages"),
        }
    value = f1 if f1 is not None else aggregated.get("F1Score")
    if value is None:
        raise StepFailed("Neither DescribeProjectVersions nor the summary file gives an F1 score.")
    return {"f1": float(value), "precision": aggregated.get("Precision"), "recall": aggregated.get("Recall"),
            "per_class": per_class, "thresholds": {name: row["threshold"] for name, row in per_class.items()}}


def start_model(run: TrainingRun) -> Done:
    if not run.start_model:
        return Done("Not starting the model (not asked to): nothing to compare it on.", skip_to="compare")
    _call(run, "start_project_version", ProjectVersionArn=run.aws["project_version_arn"], MinInferenceUnits=1)
    hosting.track_started(run.project, run.aws["project_version_arn"], region=run.region)
    return Done("Starting the model with 1 inference unit (billed while it runs; stopped when idle or rejected).")


def wait_for_model(run: TrainingRun) -> Done | Wait:
    description = _describe_version(run)
    status = description.get("Status", "")
    if status == "RUNNING":
        hosting.mark_running(run.project, run.aws["project_version_arn"])
        return Done("The model is running.")
    if status in ("FAILED", "STOPPED", "TRAINING_FAILED", "DEPRECATED", "EXPIRED"):
        raise StepFailed(f"The model did not start ({status}): {description.get('StatusMessage') or 'no reason given'}")
    return Wait(f"Model: {status or 'unknown'}.")
