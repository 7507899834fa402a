"""`python -m bench.chaos`: the job machinery under crashes and Slack faults, in real processes.

3 workspaces × 10 recordings are shared through the real listener code; 3 worker processes (the real
`JobRunner`, pipeline and leases on a throwaway PostgreSQL) process them against the fake Slack Web API.
The engine is simulated inside each worker (a job takes a few seconds and lives only in that process's
memory, as with the embedded engine), so the numbers measure recovery, not speech processing.

The baseline row is a fault-free run. In the chaos runs a random worker is killed with SIGKILL every few
seconds and restarted shortly after, and Slack answers a share of calls with 429, 500, or 500 after doing
the call. Restarted on the same host, a worker ends the dead process's leases as it starts; posing as
workers on other hosts, the recordings wait for the lease to run out (JOB_LEASE_SECONDS, 30 s). Counted per recording: summarised (one reply, the summary), failed with a message (one reply,
the failure), lost (no final message) and duplicated (more than one reply or chart); lost and duplicated
must be 0 (the exit status says so). Takeover time runs from a kill to another worker holding (or having
finished) each recording the killed worker held.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bot.engines.base import Engine
from bot.errors import JobNotFound
from bot.schema import IdentifyRequest, Job, JobStatus, VoiceprintRequest
from storage.crypto import new_key
from testbed.outputs import OUTPUT  # the same canned identify result as the fault tests

TEAMS = ("T_ALPHA", "T_BETA", "T_GAMMA")
CHANNEL = "C0001"


class SimulatedEngine(Engine):
    """Identify jobs that finish after `seconds`; job state is this process's memory only."""

    engine_id = name = "local"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started: dict[str, float] = {}

    @property
    def recommended_threshold(self) -> float:
        return 60.0

    async def upload(self, path: Path, key: str | None = None) -> str:
        return f"media://{key or uuid.uuid4().hex}"

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        raise NotImplementedError("the chaos benchmark only identifies")

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        job_id = uuid.uuid4().hex
        self.started[job_id] = time.monotonic()
        return Job(job_id=job_id, status=JobStatus.running, progress=0.0)

    async def get_job(self, job_id: str) -> Job:
        if job_id not in self.started:
            raise JobNotFound(f"Job {job_id} is unknown to this engine.")
        done = (time.monotonic() - self.started[job_id]) / self.seconds
        if done < 1:
            return Job(job_id=job_id, status=JobStatus.running, progress=done)
        return Job(job_id=job_id, status=JobStatus.succeeded, output=OUTPUT, progress=1.0)


# -- the worker process -------------------------------------------------------------------------------

async def work(job_seconds: float, capacity: int, host: str | None) -> None:
    from bot.config import load_settings
    from bot.jobs.scheduler import JobRunner
    from bot.pools import CpuPool, TaskSet
    from bot.runtime import recognizer, until_stopped
    from bot.services.context import Services
    from storage.database import Database

    settings = load_settings()
    services = Services(settings=settings, db=Database(settings.effective_database_url),
                        engine=SimulatedEngine(job_seconds))
    owner = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}" if host else None
    cpu, speech, background = CpuPool(), recognizer(settings), TaskSet()
    runner = JobRunner(services, cpu=cpu, speech=speech, background=background, capacity=capacity, owner=owner)
    await runner.start()
    try:
        await until_stopped()
    finally:
        await runner.stop()
        await background.wait()
        await cpu.close()
        await speech.close()
        await services.db.dispose()


# -- the parent -----------------------------------------------------------------------------------------

@dataclass
class Run:
    name: str
    workers: int
    kills: int = 0
    takeovers: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def wav() -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(3 * 16000, np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def share_all(fake, db, url: str, per_team: int) -> list[tuple[str, str, str]]:
    """Every team's recordings through the real listener; returns (team, file id, thread ts) per recording."""
    from bot.services.context import Services
    from bot.services.recordings import store_shared_files
    from storage.models import utcnow
    from storage.voiceprints import upsert_voiceprint
    from testbed.fake_slack import BOT_USER_ID, bot_settings

    services = Services(settings=bot_settings(fake, url), db=db, engine=SimulatedEngine(1))
    fake.members[CHANNEL] = ["U1", "U2", BOT_USER_ID]
    shared = []
    for team in TEAMS:
        await upsert_voiceprint(db, team_id=team, user_id="U1", engine="local", model_id="sim", voiceprint="vp",
                                consent_at=utcnow(), clip_duration=10.0)
    data = wav()
    for i in range(per_team):
        for team in TEAMS:
            f = fake.add_file(f"{team}-{i}.wav", "audio/wav", data)
            ts = f"{1800000000 + len(shared)}.000100"
            event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0", "ts": ts,
                     "files": [fake.file_object(f)]}
            await store_shared_files(services, event, team, BOT_USER_ID)  # the workers post the replies
            shared.append((team, f.id, ts))
    return shared


def tally(fake, rows: list, shared: list[tuple[str, str, str]]) -> dict[str, int]:
    counts = {"submitted": len(shared), "summarised": 0, "failed_with_message": 0, "lost": 0, "duplicated": 0}
    for (_team, file_id, ts), rec in zip(shared, rows, strict=True):
        replies = fake.thread(CHANNEL, ts)
        charts = [c for c in fake.calls_to("files.completeUploadExternal") if c.done and c.params.get("thread_ts") == ts]
        if len(replies) > 1 or len(charts) > 1:
            counts["duplicated"] += 1
            print(f"duplicated: {file_id} has {len(replies)} replies {[m.text[:40] for m in replies]} and "
                  f"{len(charts)} charts", file=sys.stderr)
        elif rec is not None and rec.status == "posted" and replies and "Who spoke in" in str(replies[0].blocks):
            counts["summarised"] += 1
        elif rec is not None and rec.status == "failed" and replies and replies[0].text.startswith("Could not"):
            counts["failed_with_message"] += 1
        else:
            counts["lost"] += 1
    return counts


class Workers:
    """The worker processes, started with `python -m bench.chaos --worker`."""

    def __init__(self, env: dict, logs: Path, job_seconds: float, other_hosts: bool):
        self.env, self.logs, self.job_seconds, self.other_hosts = env, logs, job_seconds, other_hosts
        self.procs: list[asyncio.subprocess.Process] = []
        self._n = 0

    async def start(self) -> asyncio.subprocess.Process:
        self._n += 1
        host = ["--host", f"chaos-host-{self._n}"] if self.other_hosts else []
        with (self.logs / f"worker-{self._n}.log").open("w") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.chaos", "--worker", "--job-seconds", str(self.job_seconds), *host,
                env=self.env, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def alive(self) -> list[asyncio.subprocess.Process]:
        return [p for p in self.procs if p.returncode is None]

    async def stop(self) -> None:
        for p in self.alive():
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()


async def one_run(name: str, url: str, *, workers: int, per_team: int, job_seconds: float, lease: int,
                  kill_every: tuple[float, float] | None, slack_faults: float, timeout: float, seed: int,
                  other_hosts: bool = False) -> Run:
    from storage.database import Database
    from storage.recordings import find_recording
    from testbed.fake_slack import FakeSlack

    rng = random.Random(seed)
    run = Run(name, workers)
    fake = FakeSlack()
    await fake.start()
    fake.retry_after = 0
    db = Database(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "ENGINE", "JOB_"))}
    env |= {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url, "DATABASE_URL": url,
            "JOB_POLL_SECONDS": "0.5", "JOB_LEASE_SECONDS": str(lease), "LOG_LEVEL": "WARNING", "TRANSCRIPT": "off",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "DATA_ENCRYPTION_KEYS": new_key()}  # PostgreSQL needs a key from the environment
    with tempfile.TemporaryDirectory(prefix="voiceid-chaos-") as logs:
        env["TMPDIR"] = logs  # killed workers leave their temporary audio here, removed with the logs
        pool = Workers(env, Path(logs), job_seconds, other_hosts)
        try:
            fake.chaos_rng.seed(seed)
            fake.chaos = slack_faults
            shared = await share_all(fake, db, url, per_team)
            began = time.monotonic()
            for _ in range(workers):
                await pool.start()
            pending: list[tuple[float, str, set[str]]] = []  # (kill time, dead owner prefix, file ids it held)
            next_kill = time.monotonic() + rng.uniform(*kill_every) if kill_every else None

            async def rows():
                return [await find_recording(db, team, file_id) for team, file_id, _ in shared]

            while time.monotonic() - began < timeout:
                current = await rows()
                if all(r is not None and r.status in ("posted", "failed") and r.notified_at for r in current):
                    break
                now = time.monotonic()
                by_file = {r.file_id: r for r in current if r is not None}
                for kill_time, prefix, held in pending:
                    for file_id in list(held):
                        r = by_file[file_id]
                        if r.status in ("posted", "failed") or (r.lease_owner and prefix not in r.lease_owner):
                            run.takeovers.append(now - kill_time)
                            held.discard(file_id)
                if next_kill is not None and now >= next_kill and pool.alive():
                    victim = rng.choice(pool.alive())
                    prefix = f":{victim.pid}:"
                    held = {r.file_id for r in current if r is not None and r.lease_owner and prefix in r.lease_owner}
                    victim.kill()
                    await victim.wait()
                    run.kills += 1
                    pending.append((time.monotonic(), prefix, held))
                    await asyncio.sleep(rng.uniform(0, 2))
                    await pool.start()
                    next_kill = time.monotonic() + rng.uniform(*kill_every)
                await asyncio.sleep(0.2)
            run.seconds = time.monotonic() - began
            fake.chaos = 0
            run.counts = tally(fake, await rows(), shared)
        finally:
            await pool.stop()
            await db.dispose()
            await fake.close()
    return run


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(runs: list[Run], lease: int) -> None:
    head = ("run", "workers", "kills", "submitted", "summarised", "failed_msg", "lost", "duplicated",
            "takeover_p50_s", "takeover_p95_s", "total_s")
    print(f"# lease {lease} s, poll 0.5 s; takeover = kill → another worker holds or finished the recording")
    print(" | ".join(head))
    for r in runs:
        p50, p95 = percentile(r.takeovers, 50), percentile(r.takeovers, 95)
        c = r.counts
        print(" | ".join(str(x) for x in (
            r.name, r.workers, r.kills, c["submitted"], c["summarised"], c["failed_with_message"], c["lost"],
            c["duplicated"], seconds(p50), seconds(p95), f"{r.seconds:.1f}")))


async def main_async(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade
    from testbed.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer(fast=False).start()
    except PostgresUnavailable as exc:
        print(f"the chaos benchmark needs PostgreSQL: {exc}", file=sys.stderr)
        return 2
    runs = []
    try:
        common = {"workers": args.workers, "per_team": args.per_team, "job_seconds": args.job_seconds,
                  "lease": args.lease, "timeout": args.timeout, "seed": args.seed}
        kills = (args.kill_min, args.kill_max)
        plan = [("baseline (no faults)", None, 0.0, False),
                ("chaos, restarts on the same host", kills, args.slack_faults, False),
                ("chaos, restarts on other hosts", kills, args.slack_faults, True)]
        for name, every, faults, other_hosts in plan:
            url = server.create_database(f"chaos_{len(runs)}")
            await upgrade(url)
            runs.append(await one_run(name, url, kill_every=every, slack_faults=faults, other_hosts=other_hosts,
                                      **common))
    finally:
        server.stop()
    print_table(runs, args.lease)
    bad = sum(r.counts["lost"] + r.counts["duplicated"] for r in runs)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--per-team", type=int, default=10, help="recordings per workspace (3 workspaces)")
    parser.add_argument("--job-seconds", type=float, default=3.0, help="simulated engine time per recording")
    parser.add_argument("--lease", type=int, default=30, help="JOB_LEASE_SECONDS for the workers (default 30)")
    parser.add_argument("--kill-min", type=float, default=4.0, help="seconds between kills, at least")
    parser.add_argument("--kill-max", type=float, default=10.0, help="seconds between kills, at most")
    parser.add_argument("--slack-faults", type=float, default=0.05, help="share of Slack calls answered 429/500")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--capacity", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)  # a worker posing as one on another machine
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(work(args.job_seconds, args.capacity, args.host))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
