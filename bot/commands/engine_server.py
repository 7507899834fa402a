"""`python -m bot engine-server`: the local engine served over the pyannoteAI HTTP protocol."""
from __future__ import annotations

import argparse
import sys

from aiohttp import web

from bot.engine_server.app import ServerLimits, create_app
from bot.engine_server.transcripts import TranscriptionSettings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (default: all)")
    parser.add_argument("--port", type=int, default=8100, help="port to listen on (default: 8100)")


def main(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.engines.factory import make_local_engine
    from bot.logs import configure_logging, secret_values
    from bot.scratch import sweep_scratch

    settings = load_settings()
    configure_logging(settings.log_level, secret_values(settings))
    sweep_scratch(settings.var_dir)
    if not settings.engine_api_key:
        print("The engine server needs ENGINE_API_KEY: set it to a long random string (e.g. `openssl rand -hex 32`)"
              " and give the bot the same value.", file=sys.stderr)
        return 2
    data_dir = settings.engine_data_dir or settings.var_dir / "engine"
    limits = ServerLimits(queue_size=settings.engine_queue_size,
                          media_ttl_s=settings.engine_media_ttl_hours * 3600)
    secret = settings.engine_webhook_secret.get_secret_value() if settings.engine_webhook_secret else None
    transcription = TranscriptionSettings(model=settings.transcript_model.value, language=settings.transcript_language,
                                          var_dir=settings.var_dir, max_duration_s=settings.max_recording_hours * 3600)

    async def app_factory() -> web.Application:
        engine = make_local_engine(settings)
        app = create_app(engine, settings.engine_api_key.get_secret_value(), data_dir, limits=limits,
                         workers=settings.engine_workers, webhook_secret=secret, transcription=transcription)

        async def warm_engine(_: web.Application):
            await engine.start()  # load the models now, not on the first job
            yield
            await engine.close()

        app.cleanup_ctx.insert(0, warm_engine)  # started first, closed last
        return app

    print(f"Engine server on http://{args.host}:{args.port} with {settings.engine_workers} worker(s), data in "
          f"{data_dir}", file=sys.stderr)
    web.run_app(app_factory(), host=args.host, port=args.port, print=None)
    return 0

