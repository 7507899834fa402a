"""The Slack app: bolt's `AsyncApp` with our listeners, served by an aiohttp `web.Application`.

Routes: `/slack/events` (events, commands, interactivity), `/slack/install` and `/slack/oauth_redirect`
(OAuth installs), `/healthz`, and the engine webhook when a webhook secret is configured. The job
runner starts and stops with the web application.

Every Slack request over HTTP must carry a valid signature. In Socket Mode, Slack's requests come over the
WebSocket instead, so the HTTP listener serves only what needs no Slack signature (`/healthz`, the signed
engine webhook): the Slack routes are not there (404) rather than open without a check.
"""
from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from sqlalchemy.exc import SQLAlchemyError

from bot.slack import enroll, feedback, lifecycle, recordings, reidentify
from bot.slack.client import make_client
from bot.slack.services import Services

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
RUNNER = web.AppKey("runner", object)


class SigningSecretMissing(ValueError):
    """Serving Slack over HTTP without a signing secret would accept anyone's requests."""


def build_bolt(services: Services) -> AsyncApp:
    """Signature checks stay on in every mode: bolt skips them only for requests that came over the socket."""
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
    for module in (enroll, recordings, feedback, reidentify, lifecycle):
        module.register(app, services)
    return app


def build_web_app(services: Services, bolt: AsyncApp, *, run_jobs: bool = True) -> web.Application:
    """The aiohttp application; with `run_jobs` the scheduler runs in this process."""
    from bot.jobs.scheduler import JobRunner

    runner = JobRunner(services) if run_jobs else None

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def install(request: web.Request) -> web.Response:
        if bolt.oauth_flow is None:
            return web.Response(status=404, text="This app is installed with a bot token (no OAuth install page).")
        return await to_aiohttp_response(await bolt.oauth_flow.handle_installation(await to_bolt_request(request)))

    async def oauth_redirect(request: web.Request) -> web.Response:
        if bolt.oauth_flow is None:
            return web.Response(status=404, text="OAuth is not configured.")
        return await to_aiohttp_response(await bolt.oauth_flow.handle_callback(await to_bolt_request(request)))

    async def health(request: web.Request) -> web.Response:
        from storage.recordings import count_by_status

        try:
            counts = await count_by_status(services.db)
        except (SQLAlchemyError, OSError) as exc:  # the database is down: say so, with a failing status
            return web.json_response({"ok": False, "error": type(exc).__name__}, status=503)
        return web.json_response({"ok": True, "engine": services.engine.name, "recordings": counts})

    async def jobs(app: web.Application):
        if runner is not None:
            await runner.start()
        yield
        if runner is not None:
            await runner.stop()
        await services.drain()
        await services.close_pool()
        await services.close_speech()

    wa = web.Application(client_max_size=1024**2)
    wa[SERVICES] = services
    wa[RUNNER] = runner
    wa.cleanup_ctx.append(jobs)
    wa.add_routes([web.get("/healthz", health)])
    if not services.socket_mode:
        wa.add_routes([web.post("/slack/events", events), web.get("/slack/install", install),
                       web.get("/slack/oauth_redirect", oauth_redirect)])
    secret = services.settings.engine_webhook_secret
    if secret is not None and runner is not None:
        from bot.engines.factory import WEBHOOK_PATH
        from bot.engines.webhooks import webhook_routes

        async def on_job(job) -> None:
            runner.pipeline.job_changed(job)

        wa.add_routes(webhook_routes(secret.get_secret_value(), on_job, path=WEBHOOK_PATH))
    return wa
