"""Cloud backends' rate limits: each backend's default (docs/backends.md) and one count shared by
every worker process, checked with real processes calling Rekognition through botocore's Stubber."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from botocore.stub import ANY, Stubber
from PIL import Image

from classify import aws
from classify.backends.base import ClassSpec
from classify.backends.custom_labels import CustomLabelsBackend
from classify.backends.rekognition import RekognitionBackend

ROOT = Path(__file__).resolve().parents[2]
CLASSES = (ClassSpec("cat", mapping=("Cat",)), ClassSpec("unknown", is_unknown=True))
ARN = "arn:aws:rekognition:eu-west-1:123456789012:project/pets/version/pets.v1/1700000000000"

# One worker process: N stubbed DetectLabels calls through the real backend once the test says go,
# printing when the rate limit let each one through.
CHILD = """
import json, sys, time
from pathlib import Path
import django
django.setup()
from botocore.stub import ANY, Stubber
from PIL import Image
from classify import aws
from classify.backends.base import ClassSpec
from classify.backends.rekognition import RekognitionBackend

calls, folder = int(sys.argv[1]), Path(sys.argv[2])
backend = RekognitionBackend(classes=[ClassSpec("cat", mapping=("Cat",)), ClassSpec("unknown", is_unknown=True)],
                             config={"region": "eu-central-1"})
stub = Stubber(aws.client("rekognition", "eu-central-1"))
for _ in range(calls):
    stub.add_response("detect_labels", {"Labels": []}, {"Image": {"Bytes": ANY}, "MaxLabels": 100, "MinConfidence": 1.0})
stub.activate()
admitted, pace = [], aws.pace


def recording_pace(*args, **kwargs):
    pace(*args, **kwargs)
    admitted.append(time.time())


aws.pace = recording_pace
(folder / f"ready-{sys.argv[3]}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
for _ in range(calls):
    backend.classify(Image.new("RGB", (96, 96), (90, 90, 90)))
stub.assert_no_pending_responses()
print(json.dumps(admitted))
"""


def call_from_processes(env: dict, folder: Path, *, processes: int, calls: int) -> tuple[float, list[float]]:
    """(when they were told to go, every call's admission time, sorted)."""
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(calls), str(folder), str(number)], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for number in range(processes)]
    deadline = time.monotonic() + 60
    while len(list(folder.glob("ready-*"))) < processes and time.monotonic() < deadline:
        assert all(child.poll() is None for child in children), [child.communicate()[1][-2000:] for child in children]
        time.sleep(0.01)
    go = time.time()
    (folder / "go").touch()
    admitted = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-2000:]
        admitted += json.loads(out.strip().splitlines()[-1])
    return go, sorted(admitted)


@pytest.mark.parametrize("cache", ["redis", "file"])
def test_the_default_limit_holds_across_worker_processes(aws_env, cache, tmp_path, settings):
    """Three processes, four calls each, to eu-central-1 (default quota 5/s): at most 5 are let
    through in each one-second window, so the 12 calls take three windows. With a count per
    process, all 12 would pass in the first."""
    if cache == "redis" and not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        pytest.skip("the shared Redis count needs CELERY_BROKER_URL=redis://...")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOUPE_VAR_DIR": str(tmp_path / "var"),
           "LOUPE_AWS_MAX_ATTEMPTS": "1", "PYTHONPATH": str(ROOT)}
    if cache == "file":  # the embedded default: Django's file cache under LOUPE_VAR_DIR
        env["CACHE_URL"] = "none"
    go, admitted = call_from_processes(env, tmp_path, processes=3, calls=4)
    # The k-th call let through cannot come before window floor(go) + k // 5 (a late timestamp
    # only makes it later): 12 calls need three one-second windows.
    assert len(admitted) == 12
    assert all(moment >= math.floor(go) + k // 5 for k, moment in enumerate(admitted)), (go, admitted)


class DefaultLimitTests:
    @pytest.fixture
    def stubbed(self, aws_env):
        def stub(region):
            stubber = Stubber(aws.client("rekognition", region))
            stubber.add_response("detect_labels", {"Labels": []},
                                 {"Image": {"Bytes": ANY}, "MaxLabels": 100, "MinConfidence": 1.0})
            stubber.activate()
            return stubber
        return stub

    @pytest.mark.parametrize(("region", "rate"), [("us-east-1", 50.0), ("eu-west-1", 50.0), ("eu-central-1", 5.0),
                                                  ("ap-southeast-2", 5.0)])
    def test_rekognition_keeps_to_its_regions_default_quota(self, stubbed, region, rate):
        stubbed(region)
        with mock.patch.object(aws, "pace") as pace:
            RekognitionBackend(classes=CLASSES, config={"region": region}).classify(Image.new("RGB", (96, 96)))
        pace.assert_called_once_with(f"rekognition:{region}", rate)

    def test_the_region_comes_from_boto3_when_the_settings_name_none(self, stubbed, monkeypatch):
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
        stubbed(None)
        with mock.patch.object(aws, "pace") as pace:
            RekognitionBackend(classes=CLASSES, config={}).classify(Image.new("RGB", (96, 96)))
        pace.assert_called_once_with("rekognition:eu-west-2", 5.0)

    def test_max_tps_overrides_the_default_and_zero_turns_it_off(self, stubbed):
        stubbed("us-east-1").add_response("detect_labels", {"Labels": []},
                                          {"Image": {"Bytes": ANY}, "MaxLabels": 100, "MinConfidence": 1.0})
        with mock.patch.object(aws, "pace") as pace:
            RekognitionBackend(classes=CLASSES, config={"region": "us-east-1", "max_tps": 120}).classify(
                Image.new("RGB", (96, 96)))
            RekognitionBackend(classes=CLASSES, config={"region": "us-east-1", "max_tps": 0}).classify(
                Image.new("RGB", (96, 96)))
        assert pace.call_args_list == [mock.call("rekognition:us-east-1", 120.0), mock.call("rekognition:us-east-1", 0.0)]
        with mock.patch("classify.aws.cache") as cache:
            aws.pace("rekognition:us-east-1", 0.0)
        assert not cache.method_calls  # no limit: nothing counted

    def test_custom_labels_models_each_have_their_own_count(self, aws_env):
        stubber = Stubber(aws.client("rekognition", "eu-west-1"))
        stubber.add_response("detect_custom_labels", {"CustomLabels": []},
                             {"ProjectVersionArn": ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0})
        with stubber, mock.patch.object(aws, "pace") as pace:
            CustomLabelsBackend(classes=CLASSES, config={"project_version_arn": ARN, "max_tps": 4}).classify(
                Image.new("RGB", (96, 96)))
        pace.assert_called_once_with(f"custom_labels:{ARN}", 4.0)
