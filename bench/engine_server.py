"""`python -m bench.engine_server`: engine-server throughput and the cost of the HTTP path.

The same 5-minute simulated meetings are identified by the local engine in-process (the baseline row) and
through our engine server on 127.0.0.1 with the HTTP client (upload, submit, poll), both with 2 worker
processes, in the same run. The ratio is HTTP wall time over in-process wall time. Every job is the same
meeting (a separate file each, the engine caches nothing) so enrollment is paid once, outside the timing.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.meetings import data_available, libri_meeting, write_wav
from bot.engines.base import Engine
from bot.schema import IdentifyRequest, JobStatus, Matching, VoiceprintInput, VoiceprintRequest


@dataclass
class Row:
    path: str
    jobs: int
    audio_min: float
    wall_s: float
    baseline_s: float

    def cells(self) -> list[str]:
        return [self.path, str(self.jobs), f"{self.audio_min:.1f}", f"{self.wall_s:.1f}",
                f"{self.jobs * 60 / self.wall_s:.2f}", f"{self.audio_min * 60 / self.wall_s:.1f}x",
                f"{self.wall_s / self.baseline_s:.3f}"]


HEADER = ["path", "jobs", "audio min", "wall s", "jobs/min", "speed", "vs in-process"]


async def voiceprint(engine: Engine, clip: Path) -> str:
    url = await engine.upload(clip)
    job = await engine.wait((await engine.submit_voiceprint(VoiceprintRequest(url=url))).job_id, timeout=600)
    await engine.release(url)
    assert job.status is JobStatus.succeeded, job.output
    return job.voiceprint_output().voiceprint


async def identify(engine: Engine, path: Path, voiceprints: dict[str, str]) -> dict:
    url = await engine.upload(path)
    request = IdentifyRequest(url=url, voiceprints=[VoiceprintInput(label=k, voiceprint=v)
                                                    for k, v in voiceprints.items()],
                              matching=Matching(threshold=engine.recommended_threshold))
    job = await engine.wait((await engine.submit_identify(request)).job_id, poll=0.5, timeout=3600)
    await engine.release(url)
    assert job.status is JobStatus.succeeded, job.output
    return job.identify_output().wire()


async def run_all(engine: Engine, meetings: list[tuple[Path, dict[str, str]]]) -> tuple[float, list[dict]]:
    """All meetings submitted at once, as a busy team would; returns wall time and outputs."""
    start = time.perf_counter()
    outputs = await asyncio.gather(*(identify(engine, path, vps) for path, vps in meetings))
    return time.perf_counter() - start, outputs


async def bench(jobs: int, minutes: float, workers: int) -> list[Row]:
    from aiohttp.test_utils import TestServer

    from bot.engine_server.app import ServerLimits, create_app
    from bot.engines.http import HTTPEngine
    from bot.engines.local import LocalEngine

    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-server-"))
    local = LocalEngine(workers=workers)
    app = create_app(local, "bench-key", tmp / "server", workers=workers, limits=ServerLimits(queue_size=jobs))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = HTTPEngine(str(server.make_url("")), "bench-key", engine_id="server", name="the engine server",
                        recommended_threshold=local.recommended_threshold)
    try:
        meeting = libri_meeting(seed=0, minutes=minutes)
        vps = {label: await voiceprint(local, write_wav(tmp / f"clip-{label}.wav", clip))
               for label, clip in meeting.enrollment.items()}
        meetings = [(write_wav(tmp / f"meeting-{i}.wav", meeting.samples), vps) for i in range(jobs)]
        audio_min = jobs * minutes
        await run_all(local, meetings[:workers])  # untimed: every worker runs one identify before timing
        base_s, base_out = await run_all(local, meetings)
        http_s, http_out = await run_all(client, meetings)
        assert http_out == base_out, "the HTTP path must give the same output as the in-process engine"
        return [Row(f"in-process LocalEngine({workers}) (baseline)", jobs, audio_min, base_s, base_s),
                Row(f"HTTP client → engine server ({workers} workers)", jobs, audio_min, http_s, base_s)]
    finally:
        await client.close()
        await server.close()
        await local.close()


def table(rows: list[Row]) -> str:
    cells = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="meetings per path (default 4)")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of each meeting (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="engine worker processes (default 2)")
    args = parser.parse_args(argv)
    if not data_available():
        print("../shared/data is missing: the benchmark needs its real speech (see its README)")
        return 2
    rows = asyncio.run(bench(args.jobs, args.minutes, args.workers))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
