"""A model of your own on an Amazon SageMaker real-time endpoint (sagemaker-runtime InvokeEndpoint).

The image goes to the endpoint as JPEG bytes; the endpoint's JSON answer is read in the shapes
image classifiers commonly return:

- a list of probabilities in class-index order (SageMaker's built-in image-classification
  algorithm), or a list holding one such list (a batch of one);
- ``{"predictions": ...}`` / ``{"prediction": ...}`` / ``{"probabilities": ...}`` around any of
  these (TensorFlow Serving, JumpStart), with the class names in ``"labels"`` when the endpoint
  sends them (JumpStart's ``application/json;verbose``);
- a list of ``{"label" | "class": name, "score" | "probability": p}`` (Hugging Face pipelines);
- a map of class name → score (``{"cat": 0.9, "dog": 0.1}``).

Model classes become project classes by name: a project class stands for the model classes listed
in ``Label.mappings["sagemaker"]`` (several model classes may make one project class: their scores
add up), else for the model class of the same name. What no project class claims goes to unknown.

A response that breaks its contract (a count that does not match ``class_order``, a score that is
not a probability in 0..1) is a non-retryable error with a message saying what to fix: scoring
with the wrong class order would silently label everything wrongly.

SageMaker bills the endpoint by instance-hour, not per call: ``price_per_call`` (default 0) lets an
admin put a per-call share on each prediction if they want one.

``invocation: "async"`` is for an asynchronous endpoint (one that can scale to zero instances when
idle): the JPEG is staged on S3 under ``input_location`` (default ``<the project's first S3
prefix>/sagemaker-async/``), ``InvokeEndpointAsync`` is called with it, and the answer is read from
the ``OutputLocation`` SageMaker returns, polled with backoff (1 s, doubling, at most 15 s apart)
for at most ``async_timeout`` seconds (default 900). Both locations must lie under the project's
own S3 prefixes (``LOUPE_S3_ROOTS``), which the caller passes as ``s3_prefixes``: a backend never
reads the database. An answer written to ``FailureLocation`` is a non-retryable error with its
first line; no answer in time is a retryable one. The staged input is deleted once read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from .. import aws
from ..images import jpeg_bytes
from .base import BackendError, ClassSpec, ModelArtifact, Scores, distribution
from .options import known, number, optional_text, region

SERVICE = "sagemaker-runtime"
CONTENT_TYPES = ("application/x-image", "image/jpeg")
SETTINGS = ("endpoint_name", "region", "content_type", "accept", "class_order", "max_tps", "price_per_call",
            "target_variant", "model_revision", "invocation", "input_location", "async_timeout", "s3_prefixes")
INVOCATIONS = ("realtime", "async")
ASYNC_FIRST_POLL, ASYNC_MAX_POLL = 1.0, 15.0  # seconds between looks at OutputLocation: 1, 2, 4, 8, 15, 15, ...
ASYNC_STAGING = "sagemaker-async/"
log = logging.getLogger(__name__)
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
WRAPPER_KEYS = ("predictions", "prediction", "probabilities")
LABEL_KEYS = ("label", "class")
SCORE_KEYS = ("score", "probability")
RAW_TOP = 20  # model classes kept in Scores.raw (a 1000-class model would otherwise fill the row)
TOLERANCE = 1e-6  # float32 softmax outputs can overshoot 1 by a few ulps


def invalid(message: str) -> BackendError:
    return BackendError(f"sagemaker: {message}", retryable=False)


class SageMakerBackend:
    name = "sagemaker"

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        config = known(config, SETTINGS, backend=self.name)
        self.endpoint_name = _endpoint_name(config.get("endpoint_name"))
        self.region = region(config, backend=self.name)
        self.content_type = config.get("content_type") or "application/x-image"
        if self.content_type not in CONTENT_TYPES:
            raise invalid(f"content_type must be one of {', '.join(CONTENT_TYPES)} (the image is sent as JPEG)")
        self.accept = config.get("accept") or "application/json"
        if not isinstance(self.accept, str) or "json" not in self.accept:
            raise invalid("accept must be a JSON media type such as application/json (the response is read as JSON)")
        self.target_variant = optional_text(config, "target_variant", backend=self.name)
        self.model_revision = optional_text(config, "model_revision", backend=self.name)
        if self.model_revision and len(self.model_revision) > 40:
            raise invalid("model_revision must be at most 40 characters")
        self.max_tps = number(config, "max_tps", 0, backend=self.name)
        self.price_per_call = number(config, "price_per_call", 0, backend=self.name)
        self.model_names = _model_names(self.classes)  # project class → the model classes it stands for
        self.to_project = {model: project for project, names in self.model_names.items() for model in names}
        self.class_order = self._class_order(config.get("class_order"))
        self.invocation = config.get("invocation") or "realtime"
        if self.invocation not in INVOCATIONS:
            raise invalid(f"invocation must be one of {', '.join(INVOCATIONS)}, not {self.invocation!r}")
        if self.invocation == "realtime" and (config.get("input_location") or config.get("async_timeout")):
            raise invalid("input_location and async_timeout are settings of invocation: async")
        self.input_location = optional_text(config, "input_location", backend=self.name)
        self.async_timeout = number(config, "async_timeout", 900, backend=self.name)
        self.s3_prefixes = tuple(config.get("s3_prefixes") or ())
        self._client = None

    def _class_order(self, value: Any) -> tuple[str, ...]:
        """The model's class names in index order; by default, each class's model names in class order."""
        if value is None:
            return tuple(name for names in self.model_names.values() for name in names)
        if not isinstance(value, list) or not value or not all(isinstance(n, str) and n for n in value):
            raise invalid("class_order must be a non-empty list of the model's class names, in index order")
        if len(set(value)) != len(value):
            raise invalid("class_order lists a class name twice")
        missing = [name for name in self.to_project if name not in value]
        if missing:
            raise invalid(f"class_order does not list {', '.join(missing)}, which the project's classes stand for "
                          "(add them to class_order or correct the classes' sagemaker mappings)")
        return tuple(value)

    @property
    def model_version(self) -> str:
        """Endpoint, variant and revision readable; a hash of everything that changes the scores."""
        settings = {"endpoint": self.endpoint_name, "variant": self.target_variant, "revision": self.model_revision,
                    "order": self.class_order, "map": self.to_project, "in": self.content_type, "out": self.accept}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        variant = f"/variant={self.target_variant}" if self.target_variant else ""
        revision = f"/rev={self.model_revision}" if self.model_revision else ""
        return f"sagemaker/{self.endpoint_name}{variant}{revision}/{digest}"

    @property
    def client(self):
        if self._client is None:
            self._client = aws.lazy_client(SERVICE, self.region)
        return self._client

    def classify(self, image: Image.Image) -> Scores:
        if self.invocation == "async":
            response = self._invoke_async(_jpeg(image))
            body = response["Body"]
        else:
            response = self._invoke(_jpeg(image))
            body = aws.call(SERVICE, response["Body"].read)  # the body streams: a timeout can come here too
        model_scores = parse_response(body, self.class_order)
        self._check_names(model_scores)
        known: dict[str, float] = {}
        for model_name, score in model_scores.items():
            project_name = self.to_project.get(model_name)
            if project_name is not None:
                known[project_name] = known.get(project_name, 0.0) + score
        top = sorted(model_scores.items(), key=lambda pair: pair[1], reverse=True)[:RAW_TOP]
        raw = {"endpoint": self.endpoint_name, "variant": response.get("InvokedProductionVariant"),
               "n_model_classes": len(model_scores), "model_scores": dict(top)}
        return Scores(distribution(known, self.classes), self.model_version, raw=raw, cost_usd=self.price_per_call)

    def _invoke(self, jpeg: bytes) -> dict:
        params = {"EndpointName": self.endpoint_name, "Body": jpeg, "ContentType": self.content_type,
                  "Accept": self.accept}
        if self.target_variant:
            params["TargetVariant"] = self.target_variant
        client = self.client
        aws.pace(f"{self.name}:{self.endpoint_name}", self.max_tps)
        try:
            return aws.call(SERVICE, client.invoke_endpoint, **params)
        except BackendError as error:
            raise _with_model_details(error) from error.__cause__

    def _invoke_async(self, jpeg: bytes) -> dict:
        """Stage the JPEG, InvokeEndpointAsync, wait for the output: ``{"Body": the answer}``."""
        bucket, key = self._staging_key()
        s3 = aws.lazy_client("s3", self.region)
        aws.call("s3", s3.put_object, Bucket=bucket, Key=key, Body=jpeg, ContentType="image/jpeg")
        try:
            params = {"EndpointName": self.endpoint_name, "InputLocation": f"s3://{bucket}/{key}",
                      "ContentType": self.content_type, "Accept": self.accept, "InferenceId": key.rsplit("/", 1)[1]}
            aws.pace(f"{self.name}:{self.endpoint_name}", self.max_tps)
            try:
                answer = aws.call(SERVICE, self.client.invoke_endpoint_async, **params)
            except BackendError as error:
                raise _with_model_details(error) from error.__cause__
            return {"Body": self._await_output(s3, answer)}
        finally:
            try:
                s3.delete_object(Bucket=bucket, Key=key)
            except Exception:  # a leftover staged image is untidy, not a failed classification
                log.warning("sagemaker: could not delete the staged input s3://%s/%s", bucket, key, exc_info=True)

    def _staging_key(self) -> tuple[str, str]:
        """(bucket, key) of a new staged input, under ``input_location`` within the project's prefixes."""
        where = self.input_location or (f"{self.s3_prefixes[0]}{ASYNC_STAGING}" if self.s3_prefixes else "")
        try:
            bucket, prefix = aws.confine_to(where or "(none)", self.s3_prefixes, what="input_location of the "
                                            "asynchronous SageMaker endpoint")
        except aws.S3LocationRefused as refused:
            raise invalid(str(refused)) from None
        prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
        return bucket, f"{prefix}{uuid.uuid4().hex}.jpg"

    def _await_output(self, s3, answer: dict) -> bytes:
        """The output object's bytes, polled with backoff; the failure object's first line as a
        non-retryable error; no answer after waits adding up to ``async_timeout`` as a retryable one."""
        output = self._confined(answer.get("OutputLocation"), "OutputLocation")
        failure = self._confined(answer["FailureLocation"], "FailureLocation") if answer.get("FailureLocation") else None
        waited, delay = 0.0, ASYNC_FIRST_POLL
        while True:
            body = _read_if_there(s3, *output)
            if body is not None:
                return body
            if failure is not None and (reason := _read_if_there(s3, *failure)) is not None:
                first = reason.decode("utf-8", "replace").strip().splitlines()[:1] or ["(empty)"]
                error = invalid(f"the asynchronous endpoint failed on this image: {first[0][:300]}")
                error.cost_usd = self.price_per_call  # the endpoint ran the invocation: its share is billed
                raise error
            if waited + delay > self.async_timeout:
                raise BackendError(f"sagemaker: no answer from the asynchronous endpoint {self.endpoint_name} "
                                   f"within {self.async_timeout:g} s (is it scaling up from zero?)", retryable=True,
                                   cost_usd=self.price_per_call)  # accepted: it runs (and bills) all the same
            time.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, ASYNC_MAX_POLL)

    def _confined(self, uri: Any, what: str) -> tuple[str, str]:
        if not isinstance(uri, str) or not uri:
            raise invalid(f"InvokeEndpointAsync returned no {what}")
        try:
            return aws.confine_to(uri, self.s3_prefixes, what=f"{what} of the asynchronous SageMaker endpoint",
                                  key_required=True)
        except aws.S3LocationRefused as refused:
            raise invalid(f"{refused} Set the endpoint's AsyncInferenceConfig S3OutputPath/S3FailurePath "
                          "under it.") from None

    def _check_names(self, model_scores: Mapping[str, float]) -> None:
        """Names that match nothing would send every image to unknown without a word: refuse."""
        if model_scores and not any(name in self.to_project for name in model_scores):
            names = ", ".join(sorted(model_scores)[:10])
            raise invalid(f"none of the endpoint's class names ({names}) is a project class or one of the "
                          f"classes' sagemaker mappings ({', '.join(sorted(self.to_project))})")


# --- Reading the response ------------------------------------------------------------------------


def parse_response(body: bytes, class_order: Sequence[str]) -> dict[str, float]:
    """The endpoint's answer as model class name → score, validated (see the module docstring)."""
    try:
        value = _load_json(body)
    except (UnicodeDecodeError, ValueError):
        raise invalid(f"the endpoint's response is not JSON: {body[:200]!r} (check the accept setting and "
                      "the model's output format)") from None
    return _scores_from(value, class_order, labels=None)


def _load_json(body: bytes) -> Any:
    text = body.decode("utf-8").strip()
    try:
        return json.loads(text)
    except ValueError:
        first = text.split("\n", 1)[0]  # application/jsonlines: one JSON document a line
        if first == text:
            raise
        return json.loads(first)


def _scores_from(value: Any, class_order: Sequence[str], labels: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return _scores_from_object(value, class_order)
    if not isinstance(value, list) or not value:
        raise invalid(_unrecognised(value))
    if all(isinstance(entry, dict) and _label_of(entry) is not None for entry in value):
        return _labelled_scores(value)
    nested = [entry for entry in value if isinstance(entry, (list, dict))]
    if not nested:
        return _indexed_scores(value, class_order, labels)
    if len(value) == 1:
        return _scores_from(value[0], class_order, labels)
    if len(nested) == len(value):
        raise invalid(f"the endpoint returned {len(value)} predictions for one image")
    raise invalid(_unrecognised(value))


def _scores_from_object(value: dict, class_order: Sequence[str]) -> dict[str, float]:
    for key in WRAPPER_KEYS:
        if key in value:
            labels = value.get("labels")
            return _scores_from(value[key], class_order, labels)
    if value and all(isinstance(name, str) for name in value):
        return {name: _probability(score, name) for name, score in value.items()}
    raise invalid(_unrecognised(value))


def _indexed_scores(values: list, class_order: Sequence[str], labels: Any) -> dict[str, float]:
    if isinstance(labels, list) and all(isinstance(n, str) for n in labels):
        if len(labels) != len(values):
            raise invalid(f"the endpoint returned {len(values)} probabilities but {len(labels)} labels")
        names = labels  # the endpoint named its classes itself (JumpStart's verbose output)
    elif len(values) != len(class_order):
        raise invalid(f"the endpoint returned {len(values)} probabilities but class_order lists "
                      f"{len(class_order)} classes (set class_order to the model's class names in index order)")
    else:
        names = class_order
    return {name: _probability(score, name) for name, score in zip(names, values, strict=True)}


def _labelled_scores(entries: list[dict]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for entry in entries:
        name = _label_of(entry)
        score = next((entry[key] for key in SCORE_KEYS if key in entry), None)
        if score is None:
            raise invalid(f"the endpoint's prediction for {name!r} has no score or probability")
        scores[name] = scores.get(name, 0.0) + _probability(score, name)
    return scores


def _label_of(entry: dict) -> str | None:
    name = next((entry[key] for key in LABEL_KEYS if key in entry), None)
    return str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"the endpoint returned a non-numeric score {value!r} for class {name!r}")
    score = float(value)
    if math.isnan(score):
        raise invalid(f"the endpoint returned NaN for class {name!r}")
    if not -TOLERANCE <= score <= 1 + TOLERANCE:
        raise invalid(f"the endpoint returned a score of {score:g} for class {name!r}; scores must be "
                      "probabilities in 0..1 (does the model return logits instead of softmax output?)")
    return min(max(score, 0.0), 1.0)


def _unrecognised(value: Any) -> str:
    sample = json.dumps(value)[:200]
    return (f"the endpoint's response has a shape Loupe does not read: {sample} (expected a list of "
            "probabilities, {\"predictions\": [...]}, a list of {\"label\", \"score\"} or a name → score map)")


# --- Settings --------------------------------------------------------------------------------------


def _endpoint_name(value: Any) -> str:
    if not value:
        raise invalid("set endpoint_name in the backend settings to the name of the SageMaker endpoint")
    if not isinstance(value, str) or not ENDPOINT_NAME.match(value):
        raise invalid(f"endpoint_name {value!r} is not a SageMaker endpoint name (letters, digits and hyphens, "
                      "up to 63 characters; the name, not the ARN)")
    return value


def _model_names(classes: Sequence[ClassSpec]) -> dict[str, tuple[str, ...]]:
    names: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for spec in classes:
        # Model classes mapped to unknown (a "background" class) are named only so they are recognised.
        own = tuple(spec.mapping) if spec.is_unknown else tuple(spec.mapping) or (spec.name,)
        if not own:
            continue
        for model_name in own:
            if model_name in seen:
                raise invalid(f"the model class {model_name!r} is mapped to both {seen[model_name]!r} and "
                              f"{spec.name!r}; give each model class to one project class")
            seen[model_name] = spec.name
        names[spec.name] = own
    return names


def _read_if_there(s3, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None while it does not exist yet."""
    from botocore.exceptions import ClientError  # botocore loads lazily, as in classify.aws

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise aws.backend_error(exc, "s3") from exc
    except Exception as exc:
        raise aws.backend_error(exc, "s3") from exc
    return aws.call("s3", response["Body"].read)


def _jpeg(image: Image.Image) -> bytes:
    return jpeg_bytes(image)


def _with_model_details(error: BackendError) -> BackendError:
    """A ModelError names the container's own status and message apart: keep them in the reason."""
    from botocore.exceptions import ClientError  # botocore loads lazily, as in classify.aws

    cause = error.__cause__
    if not isinstance(cause, ClientError) or cause.response.get("Error", {}).get("Code") != "ModelError":
        return error
    details = {key: cause.response.get(key) for key in ("OriginalStatusCode", "OriginalMessage", "LogStreamArn")}
    extra = "; ".join(f"{key}: {value}" for key, value in details.items() if value and str(value) not in str(error))
    return BackendError(f"{error}; {extra}" if extra else str(error), retryable=error.retryable, summary=error.summary)
