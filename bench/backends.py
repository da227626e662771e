"""What each cloud backend module adds to a call, around a client that answers instantly.

For every cloud backend, the same real botocore client is stubbed (botocore's Stubber, which also
validates each request against the service model) to answer at once with a realistic response.

- floor: the stubbed client call alone, with the request already built (image bytes encoded);
- ours:  ``backend.classify(image)`` on the image as a worker loads it (the stored JPEG's bytes are
  sent as they are; Bedrock first shrinks to its ``max_side``): the request, parsing the response,
  mapping to the project's classes, the distribution, the cost.

It prints, per backend, the ratio ours/floor measured in this run (the median of several rounds),
so the cost Loupe adds per call is known relative to the bare SDK call. No network, no AWS account.

    .venv/bin/python bench/backends.py [--calls 200] [--rounds 5] [--side 1024]
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARN = "arn:aws:rekognition:us-east-1:123456789012:project/pets/version/pets.v1/1700000000000"


def setup() -> None:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "LOUPE_VAR_DIR": tempfile.mkdtemp(),
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)
    import django

    django.setup()


def image(side: int):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (side * 3 // 4, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def classes(backend: str):
    from classify.backends import ClassSpec

    names = {"rekognition": (("Cat",), ("Dog",)), "sagemaker": (("cat",), ("dog",))}.get(backend, ((), ()))
    return [ClassSpec("cat", mapping=names[0], description="a cat"), ClassSpec("dog", mapping=names[1], description="a dog"),
            ClassSpec("unknown", is_unknown=True)]


def body(data: bytes):
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


def cases(jpeg: bytes) -> dict:
    """Per backend: (service, operation, settings, a response factory, the floor's request)."""
    labels = {"Labels": [{"Name": "Cat", "Confidence": 91.0, "Parents": [{"Name": "Pet"}], "Aliases": []},
                         {"Name": "Pet", "Confidence": 93.0, "Parents": [], "Aliases": []},
                         {"Name": "Dog", "Confidence": 12.5, "Parents": [{"Name": "Pet"}], "Aliases": []}],
              "LabelModelVersion": "3.0"}
    reply = json.dumps({"cat": 0.83, "dog": 0.1, "unknown": 0.07})
    return {
        "rekognition": ("rekognition", "detect_labels", {"region": "us-east-1"}, lambda: labels,
                        {"Image": {"Bytes": jpeg}, "MinConfidence": 1, "MaxLabels": 100}),
        "custom_labels": ("rekognition", "detect_custom_labels", {"project_version_arn": ARN},
                          lambda: {"CustomLabels": [{"Name": "cat", "Confidence": 88.0}, {"Name": "dog", "Confidence": 9.0}]},
                          {"ProjectVersionArn": ARN, "Image": {"Bytes": jpeg}, "MinConfidence": 0}),
        "sagemaker": ("sagemaker-runtime", "invoke_endpoint",
                      {"endpoint_name": "pets", "region": "us-east-1", "class_order": ["cat", "dog"]},
                      lambda: {"Body": body(b"[0.83, 0.17]"), "ContentType": "application/json"},
                      {"EndpointName": "pets", "Body": jpeg, "ContentType": "application/x-image", "Accept": "application/json"}),
        "bedrock": ("bedrock-runtime", "converse", {"region": "us-east-1"},
                    lambda: {"output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                             "stopReason": "end_turn", "usage": {"inputTokens": 1650, "outputTokens": 24, "totalTokens": 1674},
                             "metrics": {"latencyMs": 1}},
                    {"modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                     "messages": [{"role": "user", "content": [{"image": {"format": "jpeg", "source": {"bytes": jpeg}}},
                                                               {"text": "classify"}]}]}),
    }


def stubbed(service: str):
    from botocore.stub import Stubber

    from classify import aws

    aws.client.cache_clear()
    client = aws.client(service, "us-east-1")
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def timed(calls: int, stubber, operation: str, response, run) -> float:
    for _ in range(calls):
        stubber.add_response(operation, response())
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return time.perf_counter() - started


def measure(name: str, case, picture, calls: int, rounds: int) -> float:
    from classify.backends import get_backend

    service, operation, settings, response, request = case
    client, stubber = stubbed(service)
    backend = get_backend(name, classes=classes(name), config=settings)
    stubber.add_response(operation, response())
    backend.classify(picture)  # warm-up: the client, the encoder, the parser
    ratios = []
    for _ in range(rounds):
        floor = timed(calls, stubber, operation, response, lambda: getattr(client, operation)(**request))
        ours = timed(calls, stubber, operation, response, lambda: backend.classify(picture))
        ratios.append(ours / floor)
    stubber.deactivate()
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", type=int, default=1024, help="image width in pixels (4:3)")
    args = parser.parse_args()
    setup()
    from PIL import Image

    from classify.images import encode_jpeg, remember_source

    jpeg = encode_jpeg(image(args.side))
    picture = Image.open(io.BytesIO(jpeg))  # as a worker loads a stored derivative (scoring.load_image)
    picture.load()
    remember_source(picture, jpeg)
    print(f"cloud backend overhead: {args.calls} calls x {args.rounds} rounds, {picture.width}x{picture.height} image, "
          "stubbed botocore client (answers at once, validates requests)")
    print("floor = the stubbed SDK call with a ready request; ours = backend.classify(image)")
    for name, case in cases(jpeg).items():
        ratio = measure(name, case, picture, args.calls, args.rounds)
        print(f"{name:14s} ours/floor {ratio:6.2f}")


if __name__ == "__main__":
    main()
