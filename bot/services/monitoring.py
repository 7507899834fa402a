"""What an operator watches besides the logs: readiness (`/readyz`) and the gauges read from the database.

The database gauges are cluster-wide (every process sharing the database would report the same values), so
only `serve` processes serve them, computed at scrape time from two aggregate queries; several `serve`
processes report the same values (take `max` across them). Each check is bounded in time, so a probe or a
scrape never hangs on a database or engine that does not answer.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable

from prometheus_client.metrics_core import Metric

from bot.engines.base import Engine
from bot.metrics import ReadyAnswer, gauge
from bot.schema import utcnow
from bot.services.context import Services
from storage.database import UNAVAILABLE_ERRORS as DOWN
from storage.database import Database

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
READY_REUSE_SECONDS = 2.0


@functools.lru_cache(maxsize=1)
def _head() -> str | None:
    from storage.migrate import head_revision

    return head_revision()


async def database_state(db: Database) -> str:
    """`ok`, `unreachable`, or `not migrated` (the database is not at this code's revision: a migration is
    missing, or a newer release migrated it)."""
    from storage.migrate import current_revision

    try:
        revision = await asyncio.wait_for(current_revision(db), CHECK_SECONDS)
    except DOWN as exc:
        log.info("readiness: the database does not answer (%s)", type(exc).__name__)
        return "unreachable"
    return "ok" if revision == _head() else "not migrated"


async def engine_state(engine: Engine) -> str:
    """`ok`, or the engine's reason (its error code, `no answer`)."""
    try:
        problem = await asyncio.wait_for(engine.ready(), CHECK_SECONDS)
    except TimeoutError:
        problem = "no answer"
    return problem or "ok"


async def readiness(services: Services) -> ReadyAnswer:
    """Whether this process can do its work: the database reachable and migrated, the engine answering."""
    database, engine = await asyncio.gather(database_state(services.db), engine_state(services.engine))
    checks = {"database": database, "engine": engine}
    return all(state == "ok" for state in checks.values()), checks


class Reused:
    """`/readyz` as served: it answers anyone on the Slack listener, so one `check` runs at a time and its answer
    is reused for `reuse` seconds — a flood of unauthenticated probes costs at most one database query and one
    engine call (with pyannoteAI, a request carrying the API key) per interval."""

    def __init__(self, check: Callable[[], Awaitable[ReadyAnswer]], reuse: float = READY_REUSE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check, self._reuse, self._clock = check, reuse, clock
        self._lock = asyncio.Lock()
        self._answer: ReadyAnswer = (False, {})
        self._at = -math.inf

    async def __call__(self) -> ReadyAnswer:
        async with self._lock:
            if self._clock() - self._at >= self._reuse:
                self._answer = await self._check()
                self._at = self._clock()
            return self._answer


async def database_gauges(services: Services) -> list[Metric]:
    """The cluster-wide gauges: recordings by state, each workspace's queue depth and oldest waiting age (since
    the file was shared, or Identify again was pressed), voiceprints stored per engine; and whether the
    database answered the scrape (without it, only that)."""
    from storage.models import RecordingStatus
    from storage.recordings import recording_stats
    from storage.voiceprints import count_voiceprints

    try:
        rows, voiceprints = await asyncio.wait_for(asyncio.gather(recording_stats(services.db),
                                                                  count_voiceprints(services.db)), CHECK_SECONDS)
    except DOWN as exc:
        log.info("metrics: the database does not answer (%s)", type(exc).__name__)
        return [gauge("voiceid_database_up", "Whether the database answered this scrape", samples=[((), 0)])]
    states = {status.value: 0 for status in RecordingStatus}
    depth: dict[str, int] = {}
    oldest: dict[str, float] = {}
    now = utcnow()
    for team, status, n, first in rows:
        states[status] += n
        if status == RecordingStatus.queued.value:
            depth[team] = n
            oldest[team] = max(0.0, (now - first).total_seconds()) if first else 0.0
    return [
        gauge("voiceid_database_up", "Whether the database answered this scrape", samples=[((), 1)]),
        gauge("voiceid_recordings", "Recordings by state (cluster-wide)", ["state"],
              [((state,), n) for state, n in states.items()]),
        gauge("voiceid_queue_depth", "Recordings queued per workspace (cluster-wide; none queued: no series)",
              ["team"], [((team,), n) for team, n in depth.items()]),
        gauge("voiceid_queue_oldest_age_seconds", "How long the longest-waiting queued recording of a workspace "
              "has waited (cluster-wide)", ["team"], [((team,), age) for team, age in oldest.items()]),
        gauge("voiceid_voiceprints", "Voiceprints stored per engine (cluster-wide)", ["engine"],
              [((engine,), n) for engine, n in voiceprints.items()]),
    ]
