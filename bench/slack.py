"""`python -m bench.slack`: the Slack bot under load, through the real aiohttp endpoint.

Measures (1) the ack latency (p50/p99) of `/slack/events` for 50 concurrent signed events, idle (the
baseline row) and while a recording job runs, and (2) upload-to-summary time for a 10-minute meeting
(file_share event → summary posted in the thread), with the real local engine on real speech.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"
SR = 16000
READERS = ["1688", "1998", "2033", "2414"]
ENROLLED = {"U1688": "1688", "U1998": "1998", "U2033": "2033"}


def utterance(reader: str, index: int) -> np.ndarray:
    import soundfile as sf

    samples, _ = sf.read(str(sorted((DATA / reader).glob("*.flac"))[index]), dtype="float32")
    return samples


def meeting(seconds: float, seed: int = 3) -> np.ndarray:
    """Utterances 1–9 of four readers in turn, with pauses, until `seconds` long (fixed seed)."""
    rng = np.random.default_rng(seed)
    parts, total, i = [], 0, 0
    while total < seconds * SR:
        reader = READERS[i % 4]
        x = utterance(reader, 1 + (i // 4) % 9) * rng.uniform(0.6, 1.0)
        gap = np.zeros(int(rng.uniform(0.2, 1.0) * SR), np.float32)
        parts += [x, gap]
        total += len(x) + len(gap)
        i += 1
    return np.concatenate(parts)[: int(seconds * SR)].astype(np.float32)


def wav(samples: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000


async def burst(bot, n: int) -> list[float]:
    """n concurrent signed message events; returns each request's latency in seconds."""
    async def one(i: int) -> float:
        t = time.perf_counter()
        resp = await bot.event({"type": "message", "channel": "C0001", "user": "U1688", "text": f"hi {i}",
                                "ts": f"{time.time():.6f}"}, event_id=f"EvBurst{i}-{time.time()}")
        assert resp.status == 200, resp.status
        return time.perf_counter() - t

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def run(minutes: float, concurrency: int) -> None:
    from bot.engines.local import LocalEngine
    from bot.schema import utcnow
    from bot.services.voiceprints import voiceprint_from_path
    from storage.database import Database
    from storage.migrate import upgrade
    from storage.recordings import find_recording
    from storage.voiceprints import upsert_voiceprint
    from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings

    fake = FakeSlack()
    await fake.start()
    fake.members["C0001"] = [*ENROLLED, "U2414"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade(url)
        db = Database(url)
        engine = LocalEngine(workers=1)
        bot = await BotUnderTest(fake, bot_settings(fake, url, job_lease_seconds=600), db, engine).start()
        try:
            for user, reader in ENROLLED.items():
                clip = Path(tmp) / f"{user}.wav"
                clip.write_bytes(wav(utterance(reader, 0)))
                vp = await voiceprint_from_path(bot.services, bot.cpu, clip)
                await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user, engine=engine.engine_id, model_id=vp.model_id,
                                        voiceprint=vp.voiceprint, consent_at=utcnow(), clip_duration=vp.clip_duration)
            await burst(bot, concurrency)  # warm the endpoint
            idle = await burst(bot, concurrency)

            f = fake.add_file("all-hands.wav", "audio/wav", wav(meeting(minutes * 60)))
            event = bot.share_event(f)
            t0 = time.perf_counter()
            await bot.event(event, event_id="EvBench")
            busy: list[float] = []
            while True:
                rec = await find_recording(db, TEAM_ID, f.id)
                if rec is not None and rec.state.value in ("posted", "failed"):
                    break
                if rec is not None and rec.state.value == "running" and len(busy) < 3 * concurrency:
                    busy += await burst(bot, concurrency)
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - t0
            assert rec.state.value == "posted", rec.error_message
            engine_only = await identify_directly(engine, fake.files[f.id].data, Path(tmp), db)
        finally:
            await bot.stop()
            await engine.close()
            await db.dispose()
            await fake.close()
    print(f"\nSlack bot: {concurrency} concurrent signed events to /slack/events (ms)\n")
    print(f"| {'condition':<28} | {'n':>4} | {'p50':>7} | {'p99':>7} | {'max':>7} |")
    print(f"|{'-' * 30}|{'-' * 6}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for name, values in (("idle (baseline)", idle), ("while a job runs", busy)):
        if values:
            print(f"| {name:<28} | {len(values):>4} | {pct(values, 50):>7.1f} | {pct(values, 99):>7.1f} | "
                  f"{max(values) * 1000:>7.1f} |")
    seconds = minutes * 60
    print(f"\nA {minutes:.0f}-minute recording, 4 speakers, 3 enrolled (s)\n")
    print(f"| {'path':<50} | {'seconds':>8} | {'RTF':>6} |")
    print(f"|{'-' * 52}|{'-' * 10}|{'-' * 8}|")
    for name, value in (("engine only: upload, identify, poll (baseline)", engine_only),
                        ("Slack: file_share event → summary + chart posted", elapsed)):
        print(f"| {name:<50} | {value:>8.1f} | {value / seconds:>6.3f} |")
    print(f"\nmedian idle ack {statistics.median(idle) * 1000:.1f} ms")


async def identify_directly(engine, data: bytes, tmp: Path, db) -> float:
    """The same recording straight through the engine interface: what the bot adds is the difference."""
    from bot.schema import IdentifyRequest, Matching, VoiceprintInput
    from storage.voiceprints import voiceprints_for_users
    from testbed.fake_slack import TEAM_ID

    rows = await voiceprints_for_users(db, TEAM_ID, list(ENROLLED), engine.engine_id)
    path = tmp / "direct.wav"
    path.write_bytes(data)
    t = time.perf_counter()
    url = await engine.upload(path)
    job = await engine.submit_identify(IdentifyRequest(
        url=url, voiceprints=[VoiceprintInput(label=r.user_id, voiceprint=r.voiceprint) for r in rows],
        matching=Matching(threshold=engine.recommended_threshold)))
    job = await engine.wait(job.job_id, poll=0.2)
    elapsed = time.perf_counter() - t
    await engine.release(url)
    path.unlink()
    assert job.status.value == "succeeded", job.output
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real speech not found at {DATA} (see its README)")
    asyncio.run(run(args.minutes, args.concurrency))


if __name__ == "__main__":
    main()
