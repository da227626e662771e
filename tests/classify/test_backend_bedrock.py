"""The Bedrock (Converse) LLM backend: the request, strict reading of the reply, the one in-call
retry of a bad reply, token costs, errors, and the task path.

AWS is stubbed at the outer boundary only: botocore's Stubber on the real bedrock-runtime client
that the backend gets from ``aws.client``.
"""

from __future__ import annotations

import io
from decimal import Decimal
from unittest import mock

import pytest
from botocore.stub import Stubber
from PIL import Image

from classify import aws
from classify.backends import get_backend
from classify.backends.base import BackendError, ClassSpec
from classify.backends.bedrock import (
    CORRECTION,
    DEFAULT_MODEL,
    SYSTEM_PROMPT,
    BedrockBackend,
    InvalidReply,
    parse_reply,
    render_instruction,
)
from classify.models import Item, Label, Project
from classify.services import intake, projects
from tests.base import solid_image

REGION = "us-east-1"
CLASSES = (
    ClassSpec("cat", description="A domestic cat, any breed."),
    ClassSpec("dog", description="A dog.\nPuppies too."),
    ClassSpec("unknown", is_unknown=True, description="Anything else."),
)
CONFIG = {"region": REGION}
VALID = '{"cat": 0.9, "dog": 0.05, "unknown": 0.05}'
# Claude 3 Haiku: 0.00025 USD per 1k input tokens, 0.00125 per 1k output tokens.
ONE_CALL_COST = 1500 / 1000 * 0.00025 + 20 / 1000 * 0.00125


@pytest.fixture
def stub(aws_env):
    with Stubber(aws.client("bedrock-runtime", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


class JpegOfAtMost:
    """Matches request bytes that are an RGB JPEG no larger than ``side`` pixels a side."""

    def __init__(self, side: int) -> None:
        self.side = side

    def __eq__(self, other) -> bool:
        if not isinstance(other, bytes) or other[:3] != b"\xff\xd8\xff":
            return False
        sent = Image.open(io.BytesIO(other))
        return sent.mode == "RGB" and max(sent.size) <= self.side


def backend(classes=CLASSES, **config) -> BedrockBackend:
    return BedrockBackend(classes=classes, config={**CONFIG, **config})


def reply(text: str, *, tokens_in: int = 1500, tokens_out: int = 20, stop: str = "end_turn") -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": stop,
            "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
            "metrics": {"latencyMs": 420}}


def first_turn(classes=CLASSES, side: int = 1568) -> dict:
    return {"role": "user", "content": [{"image": {"format": "jpeg", "source": {"bytes": JpegOfAtMost(side)}}},
                                        {"text": render_instruction(classes)}]}


def request(*turns: dict, model: str = DEFAULT_MODEL, classes=CLASSES, max_tokens: int = 512, side: int = 1568) -> dict:
    return {"modelId": model, "messages": [first_turn(classes, side), *turns], "system": [{"text": SYSTEM_PROMPT}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.0}}


def correction(bad_reply: str, problem: str) -> tuple[dict, dict]:
    names = '"cat", "dog", "unknown"'
    return ({"role": "assistant", "content": [{"text": bad_reply}]},
            {"role": "user", "content": [{"text": CORRECTION.format(problem=problem, names=names)}]})


def image(size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, (200, 30, 30))


class BedrockRequestTests:
    def test_a_valid_reply_becomes_the_scores_with_the_token_cost(self, stub):
        stub.add_response("converse", reply(VALID), request())
        scores = backend().classify(image())
        assert scores.scores == {"cat": 0.9, "dog": 0.05, "unknown": 0.05}
        assert scores.cost_usd == pytest.approx(ONE_CALL_COST) == pytest.approx(0.0004)
        assert scores.model_version == backend().model_version
        assert scores.raw == {"model_id": DEFAULT_MODEL, "calls": 1, "replies": [VALID], "stop_reason": "end_turn",
                              "usage": {"inputTokens": 1500, "outputTokens": 20}}

    def test_the_instruction_lists_every_class_with_its_description_and_asks_for_only_json(self):
        text = render_instruction(CLASSES)
        assert '- "cat": A domestic cat, any breed.\n- "dog": A dog. Puppies too.\n' in text
        assert '- "unknown": none of the classes above (Anything else.)' in text
        assert "Reply with ONLY a JSON object" in text and '{"cat": p, "dog": p, "unknown": p}' in text
        bare = render_instruction((ClassSpec("cat"), ClassSpec("other", is_unknown=True)))
        assert '- "cat"\n- "other": none of the classes above\n' in bare and 'Give "other" a high' in bare

    def test_a_large_image_is_sent_no_larger_than_max_side(self, stub):
        stub.add_response("converse", reply(VALID), request(side=256))
        with_side = backend(max_side=256)
        assert with_side.input_side == 256  # scoring.load_image decodes no larger than that
        with_side.classify(image((1200, 900)))

    def test_model_tokens_and_temperature_come_from_the_settings(self, stub):
        config = {"model_id": "us.anthropic.claude-3-haiku-20240307-v1:0", "max_tokens": 300, "temperature": 0.2}
        expected = request(model=config["model_id"], max_tokens=300)
        expected["inferenceConfig"]["temperature"] = 0.2
        stub.add_response("converse", reply(VALID), expected)
        scores = backend(**config).classify(image())
        assert scores.cost_usd == pytest.approx(ONE_CALL_COST)  # a cross-region profile costs the same

    def test_it_keeps_under_the_configured_rate(self, stub):
        stub.add_response("converse", reply(VALID), request())
        with mock.patch("classify.aws.pace") as pace:
            backend(max_tps=2).classify(image())
        pace.assert_called_once_with(f"bedrock:{DEFAULT_MODEL}", 2.0)

    def test_a_long_class_list_gets_room_for_its_answer(self):
        many = tuple(ClassSpec(f"class-number-{n}") for n in range(60)) + (ClassSpec("unknown", is_unknown=True),)
        assert backend(many).max_tokens > 1000
        assert backend(many, max_tokens=700).max_tokens == 700


class BedrockReplyTests:
    @pytest.mark.parametrize("text,expected", [
        (VALID, {"cat": 0.9, "dog": 0.05}),
        (f"  \n{VALID}\n ", {"cat": 0.9, "dog": 0.05}),
        (f"```json\n{VALID}\n```", {"cat": 0.9, "dog": 0.05}),
        (f"```\n{VALID}\n```", {"cat": 0.9, "dog": 0.05}),
        ('{"cat": 1, "dog": 0}', {"cat": 1.0, "dog": 0.0}),
        ('{"cat": 0.5}', {"cat": 0.5}),  # missing classes count 0; unknown takes the rest
        ('{"unknown": 1.0}', {}),
        ('{"cat": 0.9, "dog": 0.6, "unknown": 0.0}', {"cat": pytest.approx(0.6), "dog": pytest.approx(0.4)}),  # over 1: scaled
        ('{"cat": 0.5, "unknown": 0.5, "dog": 0.5}', {"cat": pytest.approx(1 / 3), "dog": pytest.approx(1 / 3)}),
    ])
    def test_valid_replies(self, text, expected):
        assert parse_reply(text, CLASSES) == expected

    def test_scaling_keeps_the_models_own_unknown_share(self, stub):
        stub.add_response("converse", reply('{"cat": 0.5, "dog": 0.2, "unknown": 0.8}'), request())
        assert backend().classify(image()).scores == {"cat": 0.333333, "dog": 0.133333, "unknown": 0.533333}

    @pytest.mark.parametrize("text,words", [
        (f"Here are the scores: {VALID}", "not a JSON object"),
        (f"{VALID}\nI am fairly sure it is a cat.", "not a JSON object"),
        (f"```python\n{VALID}\n```", "not a JSON object"),
        ("It is a cat.", "not a JSON object"),
        ("", "the reply is empty"),
        ("[0.9, 0.1]", "JSON but not an object"),
        ('{"cat": 0.9, "bird": 0.1}', 'unknown class names "bird" (the classes are "cat", "dog", "unknown")'),
        ('{"Cat": 0.9}', 'unknown class names "Cat"'),
        ('{"cat": 1.5}', 'the score for "cat" is 1.5, outside 0..1'),
        ('{"cat": -0.2}', 'the score for "cat" is -0.2, outside 0..1'),
        ('{"cat": NaN}', "NaN is not a probability"),
        ('{"cat": Infinity}', "Infinity is not a probability"),
        ('{"cat": "0.9"}', 'the score for "cat" is not a number: "0.9"'),
        ('{"cat": true}', 'the score for "cat" is not a number: true'),
        ('{"cat": null}', 'the score for "cat" is not a number: null'),
        ('{"cat": 0, "dog": 0, "unknown": 0}', "every score is 0"),
        ('{"cat": 0.9, "cat": 0.1}', "a class is scored twice: cat"),
    ])
    def test_invalid_replies_say_what_is_wrong(self, text, words):
        with pytest.raises(InvalidReply) as problem:
            parse_reply(text, CLASSES)
        assert words in str(problem.value)

    def test_a_reply_cut_off_at_max_tokens_says_to_raise_it(self):
        with pytest.raises(InvalidReply, match=r"cut off at max_tokens \(512\): raise max_tokens"):
            parse_reply('{"cat": 0.9, "d', CLASSES, stop_reason="max_tokens", max_tokens=512)

    def test_an_invalid_reply_is_asked_for_again_once_and_both_calls_are_paid(self, stub):
        bad = f"The image shows a cat. {VALID}"
        stub.add_response("converse", reply(bad), request())
        problem = "the reply is not a JSON object (Expecting value: line 1 column 1 (char 0))"
        stub.add_response("converse", reply(VALID, tokens_in=1600, tokens_out=20), request(*correction(bad, problem)))
        scores = backend().classify(image())
        assert scores.scores == {"cat": 0.9, "dog": 0.05, "unknown": 0.05}
        assert scores.cost_usd == pytest.approx(3100 / 1000 * 0.00025 + 40 / 1000 * 0.00125)
        assert scores.raw["calls"] == 2 and scores.raw["replies"] == [bad, VALID]
        assert scores.raw["usage"] == {"inputTokens": 3100, "outputTokens": 40}

    def test_an_empty_reply_is_asked_for_again_without_an_empty_turn(self, stub):
        stub.add_response("converse", reply("", stop="content_filtered"), request())
        stub.add_response("converse", reply(VALID), request())
        assert backend().classify(image()).raw["calls"] == 2

    def test_two_invalid_replies_are_a_clear_non_retryable_error(self, stub):
        stub.add_response("converse", reply('{"cat": 0.9, "bird": 0.1}'), request())
        stub.add_response("converse", reply('{"cat": 0.9, "bird": 0.2}'), request(*correction(
            '{"cat": 0.9, "bird": 0.1}', 'unknown class names "bird" (the classes are "cat", "dog", "unknown")')))
        with pytest.raises(BackendError) as error:
            backend().classify(image())
        assert not error.value.retryable and error.value.cost_usd == pytest.approx(2 * ONE_CALL_COST)  # both billed
        assert str(error.value) == (
            "bedrock: the model's reply was not valid JSON scores twice: unknown class names \"bird\" (the classes "
            "are \"cat\", \"dog\", \"unknown\"). Last reply: \"{\\\"cat\\\": 0.9, \\\"bird\\\": 0.2}\"")


class BedrockErrorTests:
    @pytest.mark.parametrize("code,status", [
        ("ThrottlingException", 429), ("ServiceUnavailableException", 503), ("InternalServerException", 500),
        ("ModelTimeoutException", 408), ("ModelNotReadyException", 429),
    ])
    def test_throttling_and_outages_are_retryable(self, stub, code, status):
        stub.add_client_error("converse", code, "slow down", status, expected_params=request())
        with pytest.raises(BackendError, match=code) as error:
            backend().classify(image())
        assert error.value.retryable

    def test_a_retryable_error_on_the_second_call_is_still_retryable(self, stub):
        stub.add_response("converse", reply("a cat"), request())
        stub.add_client_error("converse", "ThrottlingException", "slow down", 429)
        with pytest.raises(BackendError, match="ThrottlingException") as error:
            backend().classify(image())
        assert error.value.retryable and error.value.cost_usd == pytest.approx(ONE_CALL_COST)  # the first reply's


class BedrockSettingsTests:
    @pytest.mark.parametrize("config,words", [
        ({"model": "x"}, "unknown setting(s) model"),
        ({"model_id": "anthropic claude"}, "is not a Bedrock model id"),
        ({"model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0"},
         "set price_per_1k_input_tokens and price_per_1k_output_tokens for anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ({"model_id": "amazon.nova-lite-v1:0", "price_per_1k_input_tokens": 0.00006},
         "set price_per_1k_input_tokens and price_per_1k_output_tokens"),
        ({"max_tokens": 0}, "'max_tokens' must be a whole number from 16 to 8192, not 0"),
        ({"max_tokens": 100.5}, "'max_tokens' must be a whole number"),
        ({"temperature": 2}, "'temperature' must be a number from 0 to 1"),
        ({"max_side": 10}, "'max_side' must be a whole number from 64 to 8000"),
        ({"max_tps": "fast"}, "'max_tps' must be a number of at least 0, not 'fast'"),
        ({"price_per_1k_output_tokens": -1}, "'price_per_1k_output_tokens' must be a number of at least 0"),
        ({"region": ["us-east-1"]}, "bedrock backend setting 'region' must be an AWS region such as 'eu-west-1'"),
    ])
    def test_bad_settings_are_refused_up_front_with_what_to_fix(self, config, words):
        with pytest.raises(BackendError) as error:
            BedrockBackend(classes=CLASSES, config=config)
        assert words in str(error.value) and not error.value.retryable

    def test_another_model_with_its_prices(self):
        other = backend(model_id="amazon.nova-lite-v1:0", price_per_1k_input_tokens=0.00006,
                        price_per_1k_output_tokens=0.00024)
        assert (other.price_in, other.price_out) == (0.00006, 0.00024)

    def test_the_model_version_is_known_before_any_call_and_tracks_the_prompt(self):
        with mock.patch("classify.aws.client") as client:
            version = backend().model_version
        client.assert_not_called()
        assert version.startswith(f"bedrock/{DEFAULT_MODEL}/") and version == backend().model_version
        described = (ClassSpec("cat", description="Any cat."),) + CLASSES[1:]
        reordered = (CLASSES[1], CLASSES[0], CLASSES[2])
        others = {backend(described).model_version, backend(reordered).model_version,
                  backend(model_id="amazon.nova-lite-v1:0", price_per_1k_input_tokens=0,
                          price_per_1k_output_tokens=0).model_version,
                  backend(temperature=0.5).model_version, backend(max_side=512).model_version}
        assert len(others) == 5 and version not in others
        assert backend(max_tps=3, max_tokens=1000, price_per_1k_input_tokens=1).model_version == version

    def test_it_is_registered(self):
        assert isinstance(get_backend("bedrock", classes=CLASSES, config=CONFIG), BedrockBackend)


# --- Through the task path: ingest → eager Celery task → prediction or review ----------------------


@pytest.fixture
def project(db):
    project = projects.create_project(slug="pets", labels=["cat", "dog"], backend="bedrock")
    Label.objects.filter(project=project).update(audit_rate=0.0, accept_threshold=0.6)
    Label.objects.filter(project=project, name="cat").update(description="A domestic cat, any breed.")
    Label.objects.filter(project=project, name="dog").update(description="A dog.\nPuppies too.")
    Label.objects.filter(project=project, is_unknown=True).update(description="Anything else.")
    Project.objects.filter(pk=project.pk).update(backend_config=CONFIG, min_sharpness=0)
    project.refresh_from_db()
    return project


def ingest(project, django_capture_on_commit_callbacks) -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=solid_image((200, 30, 30)), filename="cat.png")
    item.refresh_from_db()
    return item


@pytest.mark.django_db
class BedrockTaskTests:
    def test_a_scored_item_is_routed_and_its_prediction_records_the_token_cost(
        self, stub, project, django_capture_on_commit_callbacks
    ):
        stub.add_response("converse", reply(VALID), request())
        item = ingest(project, django_capture_on_commit_callbacks)
        prediction = item.predictions.get()
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "cat" and item.attempts == 1
        assert prediction.backend == "bedrock" and prediction.model_version == backend().model_version
        assert prediction.scores == {"cat": 0.9, "dog": 0.05, "unknown": 0.05}
        assert prediction.cost_usd == Decimal("0.000400")
        assert prediction.raw["usage"] == {"inputTokens": 1500, "outputTokens": 20}

    def test_throttling_is_retried_by_the_task_then_scores(self, stub, project, django_capture_on_commit_callbacks):
        stub.add_client_error("converse", "ThrottlingException", "Too many requests", 429, expected_params=request())
        stub.add_response("converse", reply(VALID), request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED and item.attempts == 2
        assert item.predictions.get().cost_usd == Decimal("0.000400")

    def test_when_retries_run_out_the_item_goes_to_review_as_backend_unavailable(
        self, stub, project, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_BACKEND_RETRIES = 2
        for _ in range(3):
            stub.add_client_error("converse", "ThrottlingException", "Too many requests", 429, expected_params=request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 3
        assert item.status_reason == "Backend unavailable: bedrock-runtime ThrottlingException"
        assert item.error_detail == "Backend unavailable: bedrock-runtime ThrottlingException: Too many requests"
        assert not item.predictions.exists()

    @pytest.mark.parametrize("code,status,message,advice", [
        ("AccessDeniedException", 403, "You don't have access to the model with the specified model ID.",
         "see docs/backends.md for the IAM policy)"),
        ("ValidationException", 400, "The provided model identifier is invalid.", "check the backend settings"),
        ("ResourceNotFoundException", 404, "Model not found.", "does not exist in this region"),
        ("ModelErrorException", 424, "The model raised an error.", "the model raised an error on this request"),
    ])
    def test_each_non_retryable_error_sends_the_item_to_review_at_once_with_its_message(
        self, stub, project, code, status, message, advice, django_capture_on_commit_callbacks
    ):
        stub.add_client_error("converse", code, message, status, expected_params=request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason.startswith(f"Backend error: bedrock-runtime {code} (")
        assert advice in item.status_reason and message not in item.status_reason
        assert item.error_detail.startswith(f"Backend error: bedrock-runtime {code}: {message}")
        if code == "AccessDeniedException":
            assert "access to anthropic.claude-3-haiku-20240307-v1:0 is enabled" in item.status_reason

    def test_an_invalid_then_valid_reply_records_the_cost_of_both_calls(
        self, stub, project, django_capture_on_commit_callbacks
    ):
        stub.add_response("converse", reply('{"cat": 2}'), request())
        stub.add_response("converse", reply(VALID), request(*correction(
            '{"cat": 2}', 'the score for "cat" is 2, outside 0..1')))
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED and item.attempts == 1
        assert item.predictions.get().cost_usd == Decimal("0.000800")

    def test_two_invalid_replies_send_the_item_to_review_at_once(self, stub, project, django_capture_on_commit_callbacks):
        stub.add_response("converse", reply("I think it is a cat."), request())
        stub.add_response("converse", reply("Definitely a cat."), request(*correction(
            "I think it is a cat.", "the reply is not a JSON object (Expecting value: line 1 column 1 (char 0))")))
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason.startswith(
            "Backend error: bedrock: the model's reply was not valid JSON scores twice: the reply is not a JSON object")
        assert not item.predictions.exists()

    def test_bad_settings_send_items_to_review_with_what_to_fix(self, aws_env, project, django_capture_on_commit_callbacks):
        Project.objects.filter(pk=project.pk).update(backend_config={**CONFIG, "model_id": "amazon.nova-pro-v1:0"})
        project.refresh_from_db()
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason.startswith("Backend error: bedrock: set price_per_1k_input_tokens")
