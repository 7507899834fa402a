"""`python -m bot engine-server`: the local engine served over the pyannoteAI HTTP protocol.

Its clients send the API key, voiceprints and audio, so it listens on this machine only by default and
serves https with `ENGINE_TLS_CERT`/`ENGINE_TLS_KEY` (or sits behind a TLS proxy on this machine); plain HTTP
on another interface needs `ALLOW_INSECURE_HTTP=true`.
"""
from __future__ import annotations

import argparse
import logging
import ssl
import sys

from aiohttp import web

from bot.engine_server.app import ServerLimits, create_app
from bot.engine_server.transcripts import TranscriptionSettings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all, "
                             "with ENGINE_TLS_CERT/ENGINE_TLS_KEY)")
    parser.add_argument("--port", type=int, default=8100, help="port to listen on (default: 8100)")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server side of TLS from PEM files (a certificate chain and its unencrypted key)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def main(args: argparse.Namespace) -> int:
    from bot.config import is_loopback, load_settings
    from bot.engines.factory import make_local_engine
    from bot.logs import configure_logging, secret_values
    from bot.scratch import sweep_scratch

    settings = load_settings()
    configure_logging(settings.log_level, secret_values(settings), settings.log_format)
    if not settings.engine_api_key:
        print("The engine server needs ENGINE_API_KEY: set it to a long random string (e.g. `openssl rand -hex 32`)"
              " and give the bot the same value.", file=sys.stderr)
        return 2
    context = None
    if settings.engine_tls_cert and settings.engine_tls_key:
        try:
            context = tls_context(str(settings.engine_tls_cert), str(settings.engine_tls_key))
        except (ssl.SSLError, OSError) as exc:
            print(f"ENGINE_TLS_CERT / ENGINE_TLS_KEY cannot be loaded ({type(exc).__name__}): give a PEM certificate "
                  "chain and its unencrypted private key.", file=sys.stderr)
            return 2
    elif not is_loopback(args.host) and not settings.allow_insecure_http:
        print(f"The engine server would listen on {args.host} in plain HTTP: the API key, voiceprints and audio "
              "would cross the network readable. Set ENGINE_TLS_CERT and ENGINE_TLS_KEY, or listen on 127.0.0.1 "
              "behind a TLS proxy (README, Engine link), or set ALLOW_INSECURE_HTTP=true.", file=sys.stderr)
        return 2
    sweep_scratch(settings.var_dir)
    data_dir = settings.engine_data_dir or settings.var_dir / "engine"
    limits = ServerLimits(queue_size=settings.engine_queue_size,
                          media_ttl_s=settings.engine_media_ttl_hours * 3600)
    secret = settings.engine_webhook_secret.get_secret_value() if settings.engine_webhook_secret else None
    transcription = TranscriptionSettings(model=settings.transcript_model.value, language=settings.transcript_language,
                                          var_dir=settings.var_dir, max_duration_s=settings.max_recording_hours * 3600)

    async def app_factory() -> web.Application:
        engine = make_local_engine(settings)
        app = create_app(engine, settings.engine_api_key.get_secret_value(), data_dir, limits=limits,
                         workers=settings.engine_workers, webhook_secret=secret, transcription=transcription,
                         public_url=settings.public_base_url)  # upload URLs: never from the Host header

        async def warm_engine(_: web.Application):
            await engine.start()  # load the models now, not on the first job
            yield
            await engine.close()

        app.cleanup_ctx.insert(0, warm_engine)  # started first, closed last
        if settings.metrics_port:
            app.cleanup_ctx.append(serve_metrics)
        return app

    async def serve_metrics(app: web.Application):
        """`/metrics` (and the probes) on METRICS_PORT, apart from the API."""
        from bot.engine_server import monitoring
        from bot.engine_server.app import ENGINE_SERVER
        from bot.metrics import metrics_listener

        server = app[ENGINE_SERVER]
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        async with metrics_listener(settings.metrics_host, settings.metrics_port, token=token,
                                    registry=monitoring.SERVER, collect=lambda: monitoring.collect(server),
                                    ready=lambda: monitoring.readiness(server)):
            yield

    scheme = "https" if context else "http"
    logging.getLogger("bot.engine_server").info("Engine server on %s://%s:%s with %d worker(s), data in %s", scheme,
                                                 args.host, args.port, settings.engine_workers, data_dir)
    web.run_app(app_factory(), host=args.host, port=args.port, ssl_context=context, print=None)
    return 0
