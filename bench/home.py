"""What opening the Home tab costs (`python -m bench.home [-n 300] [--words 3000]`).

A person's Home reads every stored result of their workspace (results are sealed at rest, so no query can
pick the ones naming them) and lists the latest 20 that do. Seeds N encrypted results in a SQLite file, one in
three naming the person, each with a transcript of `--words` words, then times `person_log` and the longest
stall of the event loop meanwhile (a 1 ms ticker). Baseline row, same run: the export's path for every result
(`storage.retention.holds`, which walks every word, then `recording_entry`).
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import deque
from pathlib import Path

from bot.schema import DiarizationSegment, IdentificationSegment, IdentifyOutput, SpeakerMatch
from bot.services.people import person_log, recording_entry
from storage.crypto import new_key
from storage.database import Database
from storage.migrate import upgrade
from storage.recordings import claim_next, complete, enqueue_recording
from storage.retention import holds, recordings_with_content

TEAM, PERSON, OTHER = "T0001", "UPERSON", "UOTHER"


def result(matched: str, words: int) -> dict:
    turns = [("SPEAKER_00", 0.0, 6.0), ("SPEAKER_01", 6.0, 10.0)]
    out = IdentifyOutput(
        diarization=[DiarizationSegment(speaker=s, start=a, end=b) for s, a, b in turns],
        identification=[IdentificationSegment(speaker=matched if s == "SPEAKER_00" else s, start=a, end=b,
                                              diarization_speaker=s, match=matched if s == "SPEAKER_00" else None)
                        for s, a, b in turns],
        voiceprints=[SpeakerMatch(speaker="SPEAKER_00", match=matched, confidence={matched: 91.0}),
                     SpeakerMatch(speaker="SPEAKER_01", confidence={matched: 12.0})], duration=10.0).wire()
    out["wordLevelTranscription"] = [{"speaker": "SPEAKER_00", "start": i * 0.3, "end": i * 0.3 + 0.2,
                                      "text": "word"} for i in range(words)]
    return out


async def seed(db: Database, n: int, words: int) -> None:
    for i in range(n):
        rec, _ = await enqueue_recording(db, team_id=TEAM, channel_id="C0001", file_id=f"F{i}", file_name="m.wav",
                                         uploader_id="U0", message_ts="1700000000.000100", engine="local")
        await claim_next(db, "bench", 600)
        await complete(db, rec.id, "bench", result(PERSON if i % 3 == 0 else OTHER, words), 10.0)


async def export_path(db: Database) -> int:
    latest: deque = deque(maxlen=20)
    async for rec in recordings_with_content(db, TEAM, batch=10):
        if holds(rec.result, PERSON) or holds(rec.relabels, PERSON):
            entry = recording_entry(rec, PERSON, 30)
            if entry["identified_by_voiceprint"] or entry["claimed_with_this_is_me"]:
                latest.append(entry)
    return len(latest)


async def timed(run) -> tuple[float, float]:
    """Seconds `run()` took and the longest the event loop went without running the ticker."""
    stalls = [0.0]

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await run()
    took = time.perf_counter() - start
    task.cancel()
    return took, max(stalls)


async def main(n: int, words: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'home.db'}"
        await upgrade(url)
        db = Database(url, keys=[new_key()])
        await seed(db, n, words)
        print(f"{n} stored results ({words} transcript words each), 1 in 3 naming the person, SQLite, encrypted\n")
        print("| way | seconds per Home | longest event-loop stall |\n|---|---|---|")
        ways = (("baseline: the export's path for every result", lambda: export_path(db)),
                ("person_log (the Home)", lambda: person_log(db, TEAM, PERSON, result_days=30)))
        for _round in range(2):  # twice, interleaved: the machine's load varies
            for name, run in ways:
                took, stall = await timed(run)
                print(f"| {name} | {took:.2f} | {stall * 1000:.0f} ms |")
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="stored results in the workspace")
    parser.add_argument("--words", type=int, default=3000, help="transcript words per result")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.words))
