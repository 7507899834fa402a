"""`make_engine(settings)`: the one place that turns `ENGINE=local|pyannoteai|server` into an `Engine`."""
from __future__ import annotations

from bot.config import EngineKind, Settings
from bot.engines.base import Engine
from bot.schema import MAX_VOICEPRINTS_PER_JOB

# pyannoteAI's docs suggest about 50–70 for strict matching; the product default sits at the lower end.
PYANNOTEAI_THRESHOLD = 50.0
WEBHOOK_PATH = "/engine/webhook"
# engine id (the `ENGINE` setting, stored with voiceprints) → the name people read
ENGINE_NAMES = {EngineKind.local: "local", EngineKind.pyannoteai: "pyannoteAI", EngineKind.server: "the engine server"}


def engine_name(engine_id: str) -> str:
    """The name people read for a stored engine id."""
    return next((name for kind, name in ENGINE_NAMES.items() if kind.value == engine_id), engine_id)


class EngineSettingsMissing(SystemExit):
    """The chosen engine lacks settings; ends the program with one clear line."""


def webhook_url(settings: Settings) -> str | None:
    """Where engines should post job results, when the bot is publicly reachable and can verify them."""
    if settings.public_base_url and settings.engine_webhook_secret:
        return settings.public_base_url.rstrip("/") + WEBHOOK_PATH
    return None


def make_engine(settings: Settings) -> Engine:
    missing = settings.missing_engine_settings()
    if missing:
        raise EngineSettingsMissing(f"ENGINE={settings.engine.value} needs {', '.join(missing)}: set "
                                    f"{'it' if len(missing) == 1 else 'them'} in the environment or .env")
    if settings.engine is EngineKind.pyannoteai:
        from bot.engines.http import HTTPEngine

        return HTTPEngine(settings.pyannoteai_api_url, settings.pyannoteai_api_key.get_secret_value(),
                          engine_id=EngineKind.pyannoteai.value, name=ENGINE_NAMES[EngineKind.pyannoteai],
                          recommended_threshold=PYANNOTEAI_THRESHOLD,
                          webhook_url=webhook_url(settings), key_setting="PYANNOTEAI_API_KEY",
                          deletes=False, url_setting="PYANNOTEAI_API_URL",
                          allow_insecure_http=settings.allow_insecure_http,
                          max_voiceprints=min(settings.engine_max_voiceprints, MAX_VOICEPRINTS_PER_JOB))
    if settings.engine is EngineKind.server:
        import ssl

        from bot.engines.http import HTTPEngine
        from bot.speech.matching import RECOMMENDED_THRESHOLD

        try:
            return HTTPEngine(settings.engine_url, settings.engine_api_key.get_secret_value(),
                              engine_id=EngineKind.server.value, name=ENGINE_NAMES[EngineKind.server],
                              recommended_threshold=RECOMMENDED_THRESHOLD,
                              webhook_url=webhook_url(settings), key_setting="ENGINE_API_KEY",
                              url_setting="ENGINE_URL", ca_file=settings.engine_ca_file,
                              allow_insecure_http=settings.allow_insecure_http,
                              max_voiceprints=settings.engine_max_voiceprints)
        except ssl.SSLError:
            raise EngineSettingsMissing("ENGINE_CA_FILE holds no PEM certificate to trust") from None
    return make_local_engine(settings)


def make_local_engine(settings: Settings):
    """The embedded engine, sized and limited by the settings (the bot's default and the engine server's core)."""
    from bot.engines.local import LocalEngine
    from bot.speech.onnx import cache_folder

    return LocalEngine(workers=settings.engine_workers, max_duration_s=settings.max_recording_hours * 3600,
                       diarization=settings.diarization, model_cache=cache_folder(settings.var_dir))
