"""`python -m bench.scale`: the scale-out layout of README *Running in production*, run on this machine, against one
`serve` doing everything (the baseline row), with the same recordings in the same run.

Scale-out: a PostgreSQL, 2 `python -m bot serve --no-jobs` (Slack requests only), 3 `python -m bot worker`
(ENGINE=server) and 2 `python -m bot engine-server` (one model worker each), all on 127.0.0.1, behind one HAProxy
(the OS package, started here with `bench/haproxy.cfg.template`): its `slack` listener balances the serve processes
round robin, its `engine` listener the engine servers with a cookie, so each worker keeps to one engine server (a
server holds the media, jobs and upload slots it issued; each server's PUBLIC_BASE_URL is its own address, so an
upload URL reaches it directly). Baseline: one `python -m bot serve` with the job runner and the local engine (2
model workers, the scale-out's total), on a PostgreSQL of its own.

Each layout: 2 readers enroll through `/enroll` (the real modal flow), 2 warm-up recordings, then N recordings
(3 readers, 2 enrolled, ~45 s of LibriSpeech each) are shared at once as signed file_share events to the Slack
listener. Upload→summary runs from the event's post to the fake Slack's chat.update that carries the summary;
throughput is N over the time from the first post to the last summary. The machine is shared, so each layout
runs `--rounds` times in A B B A order, and each run also reports the CPU seconds its processes (children
included) spent per recording, which a neighbour's load hardly moves, and the load average. Peak RSS is each process's VmHWM
(/proc/<pid>/status) read just before it stops: "own", and "tree" = the sum of its and its descendants' peaks
(model workers are child processes; peaks of different processes need not coincide, so the sum is an upper bound).
The transcript is off in both layouts (summary latency only; with it on, the worker also runs Whisper).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from storage.crypto import new_key

# What bench.scale takes from the test suite (fake Slack, throwaway PostgreSQL, signed requests): this one place.
from testbed.fake_slack import BOT_USER_ID, SIGNING_SECRET, FakeSlack
from testbed.postgres import PostgresServer, PostgresUnavailable
from testbed.slack_driver import RemoteBot, dms, free_port, submit_enrollment
from testbed.speech import DATA, utterance, wav_bytes

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "C0001"
ENROLLED = {"U1688": "1688", "U1998": "1998"}  # enrolled with utterance 0; recordings use 1..9
READERS = ("1688", "1998", "2033")
ENGINE_API_KEY = "bench-scale-engine-key-5b0c6e2f"
WARM_UP = 2

HAPROXY_TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")  # README *Scale-out layout* shows it


def haproxy_config(slack_port: int, engine_port: int, serves: list[int], engines: list[int]) -> str:
    return HAPROXY_TEMPLATE.read_text().format(
        slack_bind=f"127.0.0.1:{slack_port}", engine_bind=f"127.0.0.1:{engine_port}",
        serve_servers="\n".join(f"    server serve{i} 127.0.0.1:{p}" for i, p in enumerate(serves, 1)),
        engine_servers="\n".join(f"    server engine{i} 127.0.0.1:{p} cookie engine{i}" for i, p in enumerate(engines, 1)))


def find_haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("bench.scale needs HAProxy from the OS packages as its load balancer: "
                         "`apt-get install -y haproxy` (Debian/Ubuntu, as root), then run it again.")
    return found


# -- recordings and timing --------------------------------------------------------------------------

def recording(i: int) -> bytes:
    """~40 s: the three readers take turns twice (utterances 1..9, varying with i), with pauses."""
    rng = np.random.default_rng(100 + i)
    order = [READERS[(i + k) % 3] for k in range(3)]
    parts = []
    for turn in range(6):
        reader = order[turn % 3]
        parts += [utterance(reader, 1 + (2 * i + turn) % 9) * rng.uniform(0.6, 1.0),
                  np.zeros(int(rng.uniform(0.3, 0.9) * 16000), np.float32)]
    return wav_bytes(np.concatenate(parts).astype(np.float32))


class TimedSlack(FakeSlack):
    """The fake Slack Web API that notes when each thread's reply becomes the summary (or a failure)."""

    def __init__(self):
        super().__init__()
        self.ended: dict[str, tuple[float, bool]] = {}  # thread ts → (monotonic time, summary?)

    def _note(self, p: dict) -> None:
        m = self.messages.get((p.get("channel"), p.get("ts")))
        if m is None or m.thread_ts is None or m.thread_ts in self.ended:
            return
        if "Who spoke in" in str(m.blocks):
            self.ended[m.thread_ts] = (time.monotonic(), True)
        elif m.text.startswith("Could not"):
            self.ended[m.thread_ts] = (time.monotonic(), False)

    def _m_chat_update(self, p: dict) -> dict:
        answer = super()._m_chat_update(p)
        self._note(p)
        return answer

    def _m_chat_postMessage(self, p: dict) -> dict:
        answer = super()._m_chat_postMessage(p)
        self._note({"channel": answer["channel"], "ts": answer["ts"]})
        return answer


# -- processes -------------------------------------------------------------------------------------

def tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += tree(int(child))
    return pids


def peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class Role:
    name: str
    pids: list[int] = field(default_factory=list)
    own: list[float] = field(default_factory=list)
    tree: list[float] = field(default_factory=list)


class Layout:
    """The children of one layout, started with `python -m bot …` and a log file each, stopped in reverse."""

    def __init__(self, tmp: Path, var_dir: Path):
        self.tmp, self.var_dir = tmp, var_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.extra: list[tuple[str, int]] = []  # processes not started here (PostgreSQL)
        self.pg: PostgresServer | None = None
        self.engine_metrics: list[str] = []  # each engine server's /metrics, to count where the jobs ran

    def env(self, **settings: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "DATABASE_", "ENGINE", "JOB_", "PUBLIC_", "METRICS_", "DATA_"))}
        return base | {"PYTHONPATH": str(ROOT), "TMPDIR": str(self.var_dir), "VAR_DIR": str(self.var_dir),
                       "TRANSCRIPT": "off", "LOG_LEVEL": "INFO"} | settings

    def start(self, role: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.tmp / f"{role.split()[0]}-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(argv, cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((role, proc))
        return proc

    def bot(self, role: str, args: list[str], **settings: str) -> subprocess.Popen:
        return self.start(role, [sys.executable, "-m", "bot", *args], self.env(**settings))

    def memory(self) -> list[Role]:
        roles: dict[str, Role] = {}
        for name, pid in [(n, p.pid) for n, p in self.procs] + self.extra:
            r = roles.setdefault(name, Role(name))
            r.pids.append(pid)
            r.own.append(peak_mb(pid))
            r.tree.append(sum(peak_mb(p) for p in tree(pid)))
        return list(roles.values())

    def cpu(self) -> float:
        """CPU seconds (user + system) the layout's processes and their children have used so far."""
        return sum(cpu_s(p) for _, root in [(n, p.pid) for n, p in self.procs] + self.extra for p in tree(root))

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.pg is not None:
            self.pg.stop()

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.tmp.glob("*.log")))


async def wait_ok(url: str, layout: Layout, what: str, timeout: float = 300) -> None:
    """Until GET `url` answers 200; a child that exited ends the bench with the logs."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            dead = [name for name, p in layout.procs if p.poll() is not None]
            if dead:
                raise SystemExit(f"{', '.join(dead)} exited while waiting for {what}\n{layout.tail()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}\n{layout.tail()}")
            await asyncio.sleep(0.3)


def postgres(layout: Layout) -> str:
    """A PostgreSQL of the layout's own (its memory counted with the layout); returns the database URL."""
    try:
        layout.pg = PostgresServer().start()
    except PostgresUnavailable as exc:
        raise SystemExit(f"bench.scale needs PostgreSQL: {exc}") from None
    layout.extra.append(("PostgreSQL", int((layout.pg.data_dir / "postmaster.pid").read_text().split()[0])))
    return layout.pg.create_database("voiceid")


# -- the two layouts ---------------------------------------------------------------------------------

async def baseline(layout: Layout, fake: FakeSlack, key: str) -> str:
    """One serve doing everything; returns its Slack URL."""
    url, port = postgres(layout), free_port()
    layout.bot("serve (jobs, local engine)", ["serve"], SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
               SLACK_API_URL=fake.api_url, DATABASE_URL=url, DATA_ENCRYPTION_KEYS=key, ENGINE="local",
               ENGINE_WORKERS="2", HOST="127.0.0.1", PORT=str(port))
    await wait_ok(f"http://127.0.0.1:{port}/readyz", layout, "serve")
    return f"http://127.0.0.1:{port}"


async def scale_out(layout: Layout, fake: FakeSlack, key: str, haproxy: str) -> str:
    """PostgreSQL, 2 engine servers, 2 serve --no-jobs, HAProxy, 3 workers; returns the balancer's Slack URL."""
    url = postgres(layout)
    engine_ports, serve_ports = [free_port() for _ in range(2)], [free_port() for _ in range(2)]
    slack_port, engine_port = free_port(), free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    for i, port in enumerate(engine_ports, 1):
        layout.engine_metrics.append(f"http://127.0.0.1:{(metrics := free_port())}/metrics")
        layout.bot("engine-server (1 model worker)", ["engine-server", "--host", "127.0.0.1", "--port", str(port)],
                   ENGINE_API_KEY=ENGINE_API_KEY, ENGINE_WORKERS="1", ENGINE_DATA_DIR=str(layout.tmp / f"engine{i}"),
                   PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", METRICS_PORT=str(metrics))
    slack = {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url, "DATABASE_URL": url,
             "DATA_ENCRYPTION_KEYS": key, "ENGINE": "server", "ENGINE_URL": engine_url, "ENGINE_API_KEY": ENGINE_API_KEY}
    for port in serve_ports:
        layout.bot("serve --no-jobs", ["serve", "--no-jobs"], SLACK_SIGNING_SECRET=SIGNING_SECRET, HOST="127.0.0.1",
                   PORT=str(port), **slack)
    for port in engine_ports:
        await wait_ok(f"http://127.0.0.1:{port}/readyz", layout, "an engine server")
    config = layout.tmp / "haproxy.cfg"
    config.write_text(haproxy_config(slack_port, engine_port, serve_ports, engine_ports))
    check = await asyncio.to_thread(subprocess.run, [haproxy, "-c", "-f", str(config)], capture_output=True,
                                    text=True, check=False)
    if check.returncode:
        raise SystemExit(f"HAProxy refused {config}: {check.stdout}{check.stderr}")
    layout.start("HAProxy", [haproxy, "-db", "-f", str(config)], layout.env())
    for port in serve_ports:  # each serve's first engine call (its readiness) takes its turn at the balancer now
        await wait_ok(f"http://127.0.0.1:{port}/readyz", layout, "serve --no-jobs")
    await wait_ok(f"http://127.0.0.1:{slack_port}/readyz", layout, "the balancer's Slack listener")
    for _ in range(3):  # one at a time: each worker's first engine call places it on the next engine server
        metrics = free_port()
        layout.bot("worker", ["worker"], METRICS_PORT=str(metrics), **slack)
        await wait_ok(f"http://127.0.0.1:{metrics}/readyz", layout, "a worker")
    return f"http://127.0.0.1:{slack_port}"


# -- driving it --------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    n: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    memory: list[Role] = field(default_factory=list)
    engine_jobs: list[int] = field(default_factory=list)  # identify jobs run by each engine server
    cpu_s: float = 0.0  # CPU time the layout's processes spent on the N recordings
    load: float = 0.0  # the machine's 1-minute load average when they were done


async def identify_jobs(url: str) -> int:
    """Identify jobs an engine server ran to their end, from its own metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "voiceid_engine_server_jobs_total" and s.labels.get("kind") == "identify"))


async def enroll(bot: RemoteBot, fake: FakeSlack) -> None:
    for user, reader in ENROLLED.items():
        await submit_enrollment(bot, fake, user, wav_bytes(utterance(reader, 0)))
        answer = await fake.wait_for(lambda u=user: dms(fake, u), timeout=600, what=f"{user}'s enrollment")
        if "saved" not in answer[0]:
            raise SystemExit(f"enrollment of {user} failed: {answer[0]}")


async def share(bot: RemoteBot, fake: TimedSlack, files: list[tuple[str, bytes]], timeout: float) -> tuple:
    """All at once; returns (seconds from the first post to the last end, latencies of summaries, failures)."""
    posted: dict[str, float] = {}

    async def one(i: int, name: str, data: bytes) -> None:
        event = bot.share_event(fake.add_file(name, "audio/wav", data), channel=CHANNEL)
        posted[event["ts"]] = time.monotonic()
        resp = await bot.event(event, event_id=f"Ev-{name}-{time.time()}")
        if resp.status != 200:
            raise SystemExit(f"the Slack listener answered {resp.status} to {name}")

    start = time.monotonic()
    await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(files)))
    await fake.wait_for(lambda: all(ts in fake.ended for ts in posted), timeout=timeout, what="every summary")
    ends = {ts: fake.ended[ts] for ts in posted}
    return (max(t for t, _ in ends.values()) - start,
            [t - posted[ts] for ts, (t, ok) in ends.items() if ok], sum(not ok for _, ok in ends.values()))


async def run_layout(name: str, files: list[tuple[str, bytes]], start_layout, work: Path, var_dir: Path,
                     timeout: float) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    layout, fake = Layout(tmp, var_dir), TimedSlack()
    await fake.start()
    fake.members[CHANNEL] = [*ENROLLED, "U2033", BOT_USER_ID]
    result = Result(name, len(files))
    try:
        bot = RemoteBot(fake, await start_layout(layout, fake, new_key()))
        print(f"[{name}] up; enrolling {len(ENROLLED)} readers and warming up", flush=True)
        await enroll(bot, fake)
        await share(bot, fake, [(f"warm-up-{i}.wav", recording(100 + i)) for i in range(WARM_UP)], timeout)
        print(f"[{name}] sharing {len(files)} recordings", flush=True)
        cpu = layout.cpu()
        result.seconds, result.latencies, result.failed = await share(bot, fake, files, timeout)
        result.cpu_s, result.load = layout.cpu() - cpu, os.getloadavg()[0]
        result.memory = layout.memory()
        result.engine_jobs = [await identify_jobs(url) for url in layout.engine_metrics]
    finally:
        layout.stop()
        await fake.close()
    return result


LAYOUTS = {"baseline": "1 serve: Slack, jobs, local engine with 2 model workers",
           "scale-out": "2 serve --no-jobs, 3 workers, 2 engine servers (1 model worker each), HAProxy"}


def report(results: list[Result], audio_s: float) -> None:
    n = results[0].n
    print(f"\n{n} recordings ({audio_s / n:.0f} s each, 3 readers, 2 enrolled) shared at once; {os.cpu_count()} cores; "
          "runs in this order\n" + "".join(f"\n- {name}: {what}" for name, what in LAYOUTS.items()) + "\n")
    print("| layout | wall s | recordings/min | upload→summary p50 s | p95 s | failed | CPU s per recording "
          "| load average |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        lat = np.array(r.latencies) if r.latencies else np.array([float("nan")])
        print(f"| {r.name} | {r.seconds:.1f} | {60 * r.n / r.seconds:.2f} | {np.percentile(lat, 50):.1f} | "
              f"{np.percentile(lat, 95):.1f} | {r.failed} | {r.cpu_s / r.n:.1f} | {r.load:.1f} |")
    print("\n| layout | process | count | peak RSS each, own (MB) | with its children (MB) | all of them (MB) |")
    print("|---|---|---|---|---|---|")
    for r in {r.name: r for r in results}.values():  # each layout's last run
        for role in r.memory:
            print(f"| {r.name} | {role.name} | {len(role.pids)} | {statistics.mean(role.own):.0f} | "
                  f"{max(role.tree):.0f} | {sum(role.tree):.0f} |")
        print(f"| {r.name} | **total** | {sum(len(x.pids) for x in r.memory)} | | | "
              f"{sum(sum(x.tree) for x in r.memory):.0f} |")
    jobs = [", ".join(map(str, r.engine_jobs)) for r in results if r.engine_jobs]
    print(f"\nidentify jobs per engine server, warm-up included: {'; '.join(jobs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="recordings per run (default 12)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each layout, alternating A B B A … so a neighbour's load falls on both (default 2)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every summary")
    parser.add_argument("--only", choices=tuple(LAYOUTS), help="run one layout")
    args = parser.parse_args()
    haproxy = find_haproxy()
    if not DATA.is_dir():
        raise SystemExit(f"real speech not found at {DATA} (see its README)")
    starts = {"baseline": baseline, "scale-out": lambda lay, fake, key: scale_out(lay, fake, key, haproxy)}
    pair = [args.only] if args.only else list(LAYOUTS)
    order = [name for r in range(args.rounds) for name in (pair if r % 2 == 0 else pair[::-1])]
    files = [(f"meeting-{i:02d}.wav", recording(i)) for i in range(args.n)]
    with tempfile.TemporaryDirectory(prefix="voiceid-scale-") as work:
        var_dir = Path(work) / "var"  # shared: the ONNX models are exported once, each process has its own tmp/
        results = [asyncio.run(run_layout(name, files, starts[name], Path(work), var_dir, args.timeout))
                   for name in order]
    report(results, sum(len(data) for _, data in files) / 32000)  # 16-bit mono at 16 kHz


if __name__ == "__main__":
    main()
