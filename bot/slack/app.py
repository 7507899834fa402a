"""The Slack app: bolt's `AsyncApp` with our listeners, served by an aiohttp `web.Application`.

Routes: `/slack/events` (events, commands, interactivity), `/slack/install` and `/slack/oauth_redirect`
(OAuth installs); `bot.runtime` adds `/healthz`, `/readyz` and the engine webhook (when a webhook secret is
configured) to the same listener. Bolt is built when the application starts.

Every Slack request over HTTP must carry a valid signature. In Socket Mode, Slack's requests come over the
WebSocket instead, so the HTTP listener serves only what needs no Slack signature (the probes, the signed
engine webhook): the Slack routes are not there (404) rather than open without a check.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.failures import new_ref
from bot.pools import CpuPool, TaskSet
from bot.services.context import LocalRunner, Services
from bot.slack import asking, enroll, feedback, home, lifecycle, recordings, reidentify
from bot.slack_api.client import make_client

log = logging.getLogger(__name__)



class SigningSecretMissing(ValueError):
    """Serving Slack over HTTP without a signing secret would accept anyone's requests."""


def build_bolt(services: Services, *, cpu: CpuPool, background: TaskSet, runner: LocalRunner | None) -> AsyncApp:
    """Each listener module gets what it uses of the process: the CPU pool (charts redrawn after a correction or
    an erasure), the background tasks (work after an ack) and this process's job runner (None: work waits for a
    worker). Signature checks stay on in every mode: bolt skips them only for requests that came over the
    socket."""
    s = services.settings
    secret = s.slack_signing_secret.get_secret_value() if s.slack_signing_secret else ""
    if not secret and not services.socket_mode:
        raise SigningSecretMissing("SLACK_SIGNING_SECRET is required to receive Slack requests over HTTP.")
    token = s.slack_bot_token.get_secret_value() if s.slack_bot_token and not services.oauth else None
    kwargs: dict = {
        "name": "voice-id",
        "client": make_client(s, token),
        "signing_secret": secret,
        "process_before_response": False,
        "request_verification_enabled": True,
    }
    if services.oauth:
        from bot.slack.installation import oauth_settings

        kwargs["oauth_settings"] = oauth_settings(services)
        kwargs["installation_store_bot_only"] = True
    app = AsyncApp(**kwargs)
    enroll.register(app, services, cpu=cpu, background=background, runner=runner)
    recordings.register(app, services, runner=runner)
    feedback.register(app, services, cpu=cpu, background=background)
    reidentify.register(app, services, runner=runner)
    lifecycle.register(app, services)
    home.register(app, services, cpu=cpu, background=background, runner=runner)
    asking.register(app, services, cpu=cpu, background=background)
    app.error(on_error)
    return app


UNEXPECTED = (":warning: Something went wrong on our side (ref {ref}). Please try again; if it keeps failing, tell "
              "whoever runs Voice ID and quote the ref.")


async def on_error(error: Exception, body: dict, client: AsyncWebClient) -> None:
    """The one place a listener's unexpected exception ends: the details go to the log under a ref, and the
    person who acted is told privately (in the channel they acted in, else by DM) with that ref only."""
    ref = new_ref()
    log.error("a Slack request failed unexpectedly [ref %s]", ref, exc_info=error)
    event = body.get("event") or {}
    user = (body.get("user") or {}).get("id") or body.get("user_id") or event.get("user")
    channel = ((body.get("channel") or {}).get("id") or body.get("channel_id") or event.get("channel")
               or (body.get("container") or {}).get("channel_id"))
    if not user:
        return
    try:
        if channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=UNEXPECTED.format(ref=ref))
        else:
            await client.chat_postMessage(channel=user, text=UNEXPECTED.format(ref=ref))
    except SlackApiError as exc:
        log.warning("could not tell %s about ref %s: %s", user, ref, exc.response.get("error"))


BOLT = web.AppKey("bolt", AsyncApp)


def add_slack(app: web.Application, settings: Settings, build: Callable[[web.Application], AsyncApp]) -> None:
    """Bolt as a cleanup context (`build` makes it from the application's parts when it starts; in Socket Mode
    the WebSocket to Slack opens then too), and its routes (none in Socket Mode: Slack's requests come over the
    socket)."""

    async def bolt_app(app: web.Application) -> AsyncIterator[None]:
        bolt = app[BOLT] = build(app)
        if not settings.socket_mode:
            yield
            return
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
        await handler.connect_async()
        log.info("Voice ID: Socket Mode connected")
        yield
        await handler.close_async()

    async def events(request: web.Request) -> web.Response:
        bolt = request.app[BOLT]
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def install(request: web.Request) -> web.Response:
        from bot.slack.installation import STATE_TTL_SECONDS, InstallsBusy

        bolt = request.app[BOLT]
        if bolt.oauth_flow is None:
            return web.Response(status=404, text="This app is installed with a bot token (no OAuth install page).")
        try:
            page = await bolt.oauth_flow.handle_installation(await to_bolt_request(request))
        except InstallsBusy as exc:
            return web.Response(status=503, text=str(exc), headers={"Retry-After": str(STATE_TTL_SECONDS)})
        return await to_aiohttp_response(page)

    async def oauth_redirect(request: web.Request) -> web.Response:
        bolt = request.app[BOLT]
        if bolt.oauth_flow is None:
            return web.Response(status=404, text="OAuth is not configured.")
        return await to_aiohttp_response(await bolt.oauth_flow.handle_callback(await to_bolt_request(request)))

    app.cleanup_ctx.append(bolt_app)
    if not settings.socket_mode:
        app.add_routes([web.post("/slack/events", events), web.get("/slack/install", install),
                        web.get("/slack/oauth_redirect", oauth_redirect)])
