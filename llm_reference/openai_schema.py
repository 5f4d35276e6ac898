"""The OpenAI API's request bodies and error body, as the server validates them.

Every request is checked before it reaches the model: pydantic checks the types and
ranges of each field (strictly: `"max_tokens": "8"` is refused, not converted), and
a bad request gets a 4xx with OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`, which names the field.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

# ------------------------------------------------------------------------ errors


class APIError(Exception):
    """An error the client caused, sent as OpenAI's error body with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code, self.type, self.headers = code, type, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_error(exc: RequestValidationError) -> APIError:
    """The first problem pydantic found, with its field named like `messages.0.role`."""
    error = exc.errors()[0]
    param = ".".join(str(part) for part in error["loc"] if part != "body") or None
    if error["type"] == "json_invalid":
        return APIError(400, f"the body is not valid JSON: {error['msg']}")
    if param is None:
        return APIError(400, "the body must be a JSON object, sent with "
                        "'Content-Type: application/json'")
    message = error["msg"].removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}", param=param)


# ---------------------------------------------------------------- request bodies

MAX_N = 16  # choices per prompt
MAX_LOGPROBS = 5  # /v1/completions' `logprobs`, as OpenAI's limit
MAX_TOP_LOGPROBS = 20  # /v1/chat/completions' `top_logprobs`


class StreamOptions(BaseModel):
    include_usage: bool = False  # send a last chunk with `usage`


class SamplingRequest(BaseModel):
    """The fields both endpoints share. `None` means the default, as in OpenAI's API;
    unknown fields (user, ...) are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)  # 0 = greedy
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)  # not OpenAI's; vLLM's and ours
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-2**63, lt=2**64)  # torch's seed range
    n: int | None = Field(None, ge=1, le=MAX_N)  # choices per prompt
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def stop_strings(cls, stop: str | list[str] | None) -> str | list[str] | None:
        strings = [stop] if isinstance(stop, str) else stop or []
        if len(strings) > 4 or not all(strings):
            raise ValueError("at most 4 stop strings, none of them empty")
        return stop

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def top_logprobs_k(self) -> int | None:
        """How many alternatives to report per token; None: no logprobs at all."""
        return None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingRequest):
    # text, token ids, or a list of either: one prompt each
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # and the k likeliest

    def prompts(self) -> list[str | list[int]]:
        """The prompts: a list of strings or of id lists is several, else one."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)):
            return list(p)
        return [p]

    def top_logprobs_k(self) -> int | None:
        return self.logprobs


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    role: str  # system | user | assistant (checked by chat.encode_chat)
    content: str


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer name of max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def top_logprobs_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None
