"""Slack Web API clients: every call goes through `SLACK_API_URL` and retries 429s, 5xx answers and
dropped connections — except that a call which may have taken effect before it failed (a 5xx or a lost
connection after sending) is never repeated blindly when repeating it would duplicate a message or a
file: those go through `bot.slack_api.replies`, which looks before it posts again."""
from __future__ import annotations

import re

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.metrics import SLACK_API_ERRORS

# Methods whose effect is not idempotent: a repeat after an ambiguous failure could post twice.
NOT_REPEATABLE = ("chat.postMessage", "chat.postEphemeral", "files.completeUploadExternal")
SERVER_ERRORS = (500, 502, 503, 504)
API_METHOD = re.compile(r"[a-z]+(?:\.[A-Za-z]+)+")  # chat.update, files.getUploadURLExternal


def repeatable(url: str) -> bool:
    return not url.split("?", 1)[0].rstrip("/").endswith(NOT_REPEATABLE)


class ServerErrorRetry(AsyncRetryHandler):
    """5xx answers to idempotent methods are retried with backoff."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code in SERVER_ERRORS and repeatable(request.url)


class CountErrors(AsyncRetryHandler):
    """Retries nothing: counts every 429 and 5xx answer (each attempt) in the metrics, by method."""

    async def can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if response is not None and (response.status_code == 429 or response.status_code >= 500):
            method = request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            method = method if API_METHOD.fullmatch(method) else "other"  # an upload URL names a file, not a method
            SLACK_API_ERRORS.labels(method, "429" if response.status_code == 429 else "5xx").inc()
        return False


class ConnectionErrorRetry(AsyncConnectionErrorRetryHandler):
    """A dropped connection is retried for idempotent methods only (the request may have been processed)."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        return repeatable(request.url) and await super()._can_retry_async(
            state=state, request=request, response=response, error=error)


def retry_handlers() -> list:
    # A 429 means Slack did not process the call, so every method may wait for Retry-After and repeat it.
    return [CountErrors(), ConnectionErrorRetry(), AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetry(max_retry_count=2)]


def make_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return AsyncWebClient(token=token, base_url=base, retry_handlers=retry_handlers(), timeout=30)


async def client_for(services, team_id: str, enterprise_id: str | None = None) -> AsyncWebClient:
    """A workspace's client outside bolt (jobs, the command line), with its bot token from
    `services.bot_token` (`bot.services.context.Services`; `NotInstalled` without one)."""
    return make_client(services.settings, await services.bot_token(team_id, enterprise_id))


def slack_transient(exc: SlackApiError) -> bool:
    """Slack is rate limiting or failing: worth another attempt later."""
    return exc.response.get("error") == "ratelimited" or exc.response.status_code >= 500
