"""A multimodal LLM on Amazon Bedrock, asked through the Converse API (bedrock-runtime Converse).

The image goes in as JPEG bytes with an instruction that lists the project's classes (each with
its description, the unknown/other class included) and asks for ONLY a JSON object mapping every
class name to a probability in 0..1. The reply is read strictly: a JSON object (surrounding
whitespace or one ```json fence tolerated, nothing else), keys exactly the project's class names,
values numbers in 0..1. Missing classes count 0; if the scores add up to more than 1 they are
scaled to 1; what they leave below 1 goes to unknown; all zeros is refused.

An LLM sometimes answers in prose. A reply that cannot be used is asked for once more within the
same ``classify`` call (the bad reply and a correction go back to the model); a second bad reply is
a non-retryable error, since retrying the task would only buy more of the same. The tokens of
both calls are paid for and counted in ``Scores.cost_usd`` (or, when no scores come of them, in
``BackendError.cost_usd``, which the budgets count too).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from .. import aws
from ..images import bounded, jpeg_bytes
from .base import BackendError, ClassSpec, ModelArtifact, Scores, distribution, unknown_name
from .options import known, number, region

SERVICE = "bedrock-runtime"
DEFAULT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
# USD per 1,000 input and output tokens, on-demand (cross-region profiles "us."/"eu."/"apac." cost the same).
KNOWN_PRICES = {DEFAULT_MODEL: (0.00025, 0.00125)}
PROFILE_PREFIXES = ("us.", "eu.", "apac.")
DEFAULT_MAX_TOKENS = 512
# Claude scales images down to at most 1568 px a side (and about 1.15 megapixels, ~1,600 input
# tokens) anyway: sending more costs upload time and nothing else. A smaller max_side costs fewer tokens.
DEFAULT_MAX_SIDE = 1568
SETTINGS = ("model_id", "region", "max_tokens", "temperature", "max_tps", "max_side",
            "price_per_1k_input_tokens", "price_per_1k_output_tokens")
REPLY_KEPT = 1000  # characters of each reply kept in Scores.raw

PROMPT_VERSION = "1"
SYSTEM_PROMPT = (
    "You are an image classifier inside a labelling tool. You look at one image and answer with a "
    "single JSON object of class probabilities: no prose, no explanation, no code, no markdown."
)
INSTRUCTION = """Which of these classes does the image show?

{class_lines}

Reply with ONLY a JSON object that maps each class name above, spelled exactly as listed, to the \
probability (a number from 0 to 1) that the image belongs to that class. The probabilities should \
add up to 1. Give {unknown} a high probability when the image shows none of the other classes or \
you cannot tell. The reply must have this form, with your probabilities in place of p:
{form}"""
CORRECTION = """Your reply could not be used: {problem}.
Reply again with ONLY the JSON object: its keys exactly these class names: {names}; its values numbers from 0 to 1."""
FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL | re.IGNORECASE)


def invalid(message: str) -> BackendError:
    return BackendError(f"bedrock: {message}", retryable=False)


class InvalidReply(ValueError):
    """The model's reply is not a usable JSON object of scores (the message says why)."""


class BedrockBackend:
    name = "bedrock"

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        config = known(config, SETTINGS, backend=self.name)
        self.model_id = config.get("model_id") or DEFAULT_MODEL
        if not isinstance(self.model_id, str) or re.search(r"\s", self.model_id) or len(self.model_id) > 300:
            raise invalid(f"model_id {self.model_id!r} is not a Bedrock model id, inference profile id or ARN")
        self.region = region(config, backend=self.name)
        self.temperature = number(config, "temperature", 0.0, high=1.0, backend=self.name)
        self.max_side = int(number(config, "max_side", DEFAULT_MAX_SIDE, low=64, high=8000, integer=True, backend=self.name))
        self.input_side = self.max_side  # services.load_image decodes the JPEG no larger than needed
        self.max_tps = number(config, "max_tps", 0.0, backend=self.name)
        self.max_tokens = int(number(config, "max_tokens", self._default_max_tokens(), low=16, high=8192, integer=True, backend=self.name))
        self.price_in, self.price_out = self._prices(config)
        self.names = [spec.name for spec in self.classes]
        self.instruction = render_instruction(self.classes)
        self._client = None

    def _default_max_tokens(self) -> int:
        """512, or more when a long class list needs it (unused tokens cost nothing)."""
        return max(DEFAULT_MAX_TOKENS, sum(len(spec.name) // 2 + 8 for spec in self.classes) * 2)

    def _prices(self, config: Mapping[str, Any]) -> tuple[float, float]:
        base_id = next((self.model_id[len(p):] for p in PROFILE_PREFIXES if self.model_id.startswith(p)), self.model_id)
        known = KNOWN_PRICES.get(base_id)
        keys = ("price_per_1k_input_tokens", "price_per_1k_output_tokens")
        if known is None and any(config.get(key) is None for key in keys):
            raise invalid(f"set price_per_1k_input_tokens and price_per_1k_output_tokens for {self.model_id} (USD "
                          "per 1,000 tokens, from the Bedrock pricing page; 0 to not track its cost)")
        defaults = known or (0.0, 0.0)
        return number(config, keys[0], defaults[0], backend=self.name), number(config, keys[1], defaults[1], backend=self.name)

    @property
    def model_version(self) -> str:
        """The model, and a hash of what it is asked and how (prompt, classes, temperature, image size)."""
        asked = {"v": PROMPT_VERSION, "system": SYSTEM_PROMPT, "instruction": self.instruction,
                 "correction": CORRECTION, "temperature": self.temperature, "max_side": self.max_side}
        digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:10]
        return f"bedrock/{self.model_id}/{digest}"

    @property
    def client(self):
        if self._client is None:
            self._client = aws.lazy_client(SERVICE, self.region)
        return self._client

    def classify(self, image: Image.Image) -> Scores:
        jpeg = _jpeg(image, self.max_side)
        messages = [{"role": "user", "content": [
            {"image": {"format": "jpeg", "source": {"bytes": jpeg}}}, {"text": self.instruction}]}]
        replies, tokens_in, tokens_out = [], 0, 0
        cost = lambda: tokens_in / 1000 * self.price_in + tokens_out / 1000 * self.price_out  # noqa: E731
        for attempt in (1, 2):
            try:
                response = self._converse(messages)
            except BackendError as error:  # the correction failed: the first reply was billed
                error.cost_usd = cost()
                raise
            usage = response.get("usage") or {}
            tokens_in += int(usage.get("inputTokens") or 0)
            tokens_out += int(usage.get("outputTokens") or 0)
            text, stop_reason = reply_text(response)
            replies.append(text[:REPLY_KEPT])
            try:
                known = parse_reply(text, self.classes, stop_reason=stop_reason, max_tokens=self.max_tokens)
                break
            except InvalidReply as problem:
                if attempt == 2:
                    error = invalid(f"the model's reply was not valid JSON scores twice: {problem}. "
                                    f"Last reply: {_snippet(text)}")
                    error.cost_usd = cost()
                    raise error from None
                messages = messages + self._correction(text, problem)
        raw = {"model_id": self.model_id, "calls": len(replies), "replies": replies, "stop_reason": stop_reason,
               "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out}}
        return Scores(distribution(known, self.classes), self.model_version, raw=raw, cost_usd=cost())

    def _correction(self, reply: str, problem: InvalidReply) -> list[dict]:
        """The bad reply and what was wrong with it. Roles must alternate and an empty text block is
        refused, so an empty reply just asks the same question again."""
        if not reply.strip():
            return []
        names = ", ".join(json.dumps(name) for name in self.names)
        return [{"role": "assistant", "content": [{"text": reply}]},
                {"role": "user", "content": [{"text": CORRECTION.format(problem=problem, names=names)}]}]

    def _converse(self, messages: list[dict]) -> dict:
        client = self.client
        aws.pace(f"{self.name}:{self.model_id}", self.max_tps)
        try:
            return aws.call(
                SERVICE, client.converse, modelId=self.model_id, messages=messages,
                system=[{"text": SYSTEM_PROMPT}],
                inferenceConfig={"maxTokens": self.max_tokens, "temperature": self.temperature},
            )
        except BackendError as error:
            if "AccessDeniedException" in str(error):
                hint = f"; also check that access to {self.model_id} is enabled for this account and region " \
                       "(Bedrock console, Model access)"
                raise BackendError(f"{error}{hint}", retryable=False, summary=f"{error.summary}{hint}") from error
            raise


# --- The prompt and the reply --------------------------------------------------------------------


def render_instruction(classes: Sequence[ClassSpec]) -> str:
    unknown = unknown_name(classes)
    lines = []
    for spec in classes:
        if spec.is_unknown:
            about = "none of the classes above" + (f" ({spec.description.strip()})" if spec.description.strip() else "")
        else:
            about = spec.description.strip()
        lines.append(f"- {json.dumps(spec.name)}" + (f": {' '.join(about.split())}" if about else ""))
    form = "{" + ", ".join(f"{json.dumps(spec.name)}: p" for spec in classes) + "}"
    return INSTRUCTION.format(class_lines="\n".join(lines), unknown=json.dumps(unknown), form=form)


def reply_text(response: Mapping[str, Any]) -> tuple[str, str]:
    """The text of the model's reply (its text blocks joined) and the stop reason."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return text, str(response.get("stopReason", ""))


def parse_reply(text: str, classes: Sequence[ClassSpec], *, stop_reason: str = "",
                max_tokens: int = 0) -> dict[str, float]:
    """Scores of the known classes (unknown's comes out as the rest) from a reply, or ``InvalidReply``."""
    body = text.strip()
    fenced = FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body:
        raise InvalidReply(f"the reply is empty (stop reason: {stop_reason or 'none'})")
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as exc:
        cut = f"; it was cut off at max_tokens ({max_tokens}): raise max_tokens" if stop_reason == "max_tokens" else ""
        raise InvalidReply(f"the reply is not a JSON object ({exc}){cut}") from None
    if not isinstance(value, dict):
        raise InvalidReply(f"the reply is JSON but not an object of class scores: {_snippet(body)}")
    return _scores(value, classes)


def _scores(value: dict, classes: Sequence[ClassSpec]) -> dict[str, float]:
    names = [spec.name for spec in classes]
    strangers = [key for key in value if key not in names]
    if strangers:
        raise InvalidReply(f"unknown class names {', '.join(json.dumps(k) for k in strangers)} "
                           f"(the classes are {', '.join(json.dumps(n) for n in names)})")
    scores = {}
    for name, score in value.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidReply(f"the score for {json.dumps(name)} is not a number: {json.dumps(score)[:50]}")
        if not 0.0 <= score <= 1.0:
            raise InvalidReply(f"the score for {json.dumps(name)} is {score:g}, outside 0..1")
        scores[name] = float(score)
    total = sum(scores.values())
    if total <= 0:
        raise InvalidReply("every score is 0")
    if total > 1.0:  # scale every class, unknown included, so the model's unknown keeps its share
        scores = {name: score / total for name, score in scores.items()}
    unknown = unknown_name(classes)
    return {name: score for name, score in scores.items() if name != unknown}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"a class is scored twice: {', '.join(twice)}")
    return dict(pairs)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a probability")


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat[:200] + ("…" if len(flat) > 200 else ""), ensure_ascii=False)


# --- Settings and plumbing -------------------------------------------------------------------------


def _jpeg(image: Image.Image, max_side: int) -> bytes:
    return jpeg_bytes(bounded(image if image.mode == "RGB" else image.convert("RGB"), max_side))
