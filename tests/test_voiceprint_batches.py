"""Several voiceprints per person on every engine, with real speech, through the bot's real HTTP endpoint and the
fake Slack: three readers enrolled twice each (their clip as it is and a phone-like copy) and two absent people
once. The embedded engine takes all of them in one identify job; our engine server, with its per-job limit
lowered to 2 (ENGINE_MAX_VOICEPRINTS), gets them split by the HTTP client (the pyannoteAI client, capped at 50)
into batches that are followed as one job and merged. Either way each reader is named once, the absent people and
the reader who never enrolled are not, and no engine sees who a voiceprint is."""
from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from bench.voiceprints import phone_like
from bot.engine_server.app import ServerLimits
from bot.engines.base import Engine
from bot.errors import RequestError
from bot.schema import IdentifyRequest, VoiceprintInput
from storage.models import utcnow
from storage.voiceprints import list_voiceprints, upsert_voiceprint
from testbed.fake_slack import TEAM_ID
from tests.engine_http_support import client_for, engine_server
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import concat, slack_world, utterance, wait_status, wav_bytes

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998", "U2033": "2033"}  # in the meeting, two voiceprints each
ABSENT = {"U2609": "2609", "UP225": "vctk_p225"}  # channel members enrolled once, not in the meeting
NEVER = "U2414"  # in the meeting, never enrolled
LIMIT = 2

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Watched(Engine):
    """The engine server's engine, recording the voiceprints of every identify job it runs."""

    def __init__(self, engine: Engine):
        self.engine, self.engine_id, self.name = engine, engine.engine_id, engine.name
        self.identify_labels: list[list[str]] = []

    @property
    def recommended_threshold(self) -> float:
        return self.engine.recommended_threshold

    async def upload(self, path, key=None):
        return await self.engine.upload(path, key)

    async def submit_voiceprint(self, request):
        return await self.engine.submit_voiceprint(request)

    async def submit_identify(self, request):
        self.identify_labels.append([v.label for v in request.voiceprints])
        return await self.engine.submit_identify(request)

    async def get_job(self, job_id):
        return await self.engine.get_job(job_id)

    async def forget(self, job_id):
        await self.engine.forget(job_id)

    async def release(self, url):
        await self.engine.release(url)


def clip_of(person: str):
    """The person's first utterance (never one the meeting uses)."""
    from bench import meetings as M

    return utterance(person, 0) if person.isdigit() else M.read(M.utterances(person)[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["local", "server"])
async def world(request, local_engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"two-voiceprints-{request.param}")
    watched = Watched(local_engine)
    if request.param == "local":
        async with slack_world(local_engine, tmp) as (fake, db, bot):
            yield request.param, watched, fake, db, bot
        return
    async with engine_server(watched, tmp / "engine", limits=ServerLimits(max_voiceprints=LIMIT)) as server:
        client = client_for(server)
        client.max_voiceprints = LIMIT  # as make_engine sets it from ENGINE_MAX_VOICEPRINTS
        try:
            async with slack_world(client, tmp) as (fake, db, bot):
                yield request.param, watched, fake, db, bot
        finally:
            await client.close()


async def enroll_twice(services, tmp: Path) -> None:
    """Each reader's clip as it is ("default") and a phone-like copy of it ("phone"), each absent person's once,
    made by the services' engine and stored as `/enroll` stores them."""
    from bot.services.voiceprints import voiceprint_from_path

    clips = {(user, "default"): clip_of(p) for user, p in {**READERS, **ABSENT}.items()}
    clips |= {(user, "phone"): phone_like(clip_of(p), seed=i) for i, (user, p) in enumerate(READERS.items())}
    for (user, name), samples in clips.items():
        path = tmp / f"{user}-{name}.wav"
        path.write_bytes(wav_bytes(samples))
        vp = await voiceprint_from_path(services, shared_cpu(), path)
        await upsert_voiceprint(services.db, team_id=TEAM_ID, user_id=user, engine=services.engine.engine_id,
                                model_id=vp.model_id, voiceprint=vp.voiceprint, consent_at=utcnow(),
                                clip_duration=vp.clip_duration, name=name, consent_text="I agree")


@pytest.mark.speech
async def test_each_reader_is_named_once_and_nobody_absent(world, tmp_path):
    kind, watched, fake, db, bot = world
    fake.members[CHANNEL] = [*READERS, *ABSENT, NEVER, "UBOT"]
    fake.users.update({"U1688": "Ann", "U1998": "Bea", "U2033": "Cid", NEVER: "Dan"})
    await enroll_twice(bot.services, tmp_path)
    assert len(await list_voiceprints(db, TEAM_ID, "U1688")) == 2
    samples = concat([("1688", 2), ("1998", 2), ("2033", 2), ("2414", 2), ("1688", 3), ("2033", 3)], pause=0.6)
    f = fake.add_file("standup.wav", "audio/wav", wav_bytes(samples))
    event = bot.share_event(f)
    assert (await bot.event(event, event_id=f"Ev-{kind}")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=600)
    assert rec.state.value == "posted", rec.error_message

    reply = await fake.one_reply(CHANNEL, event["ts"])
    text = str(reply.blocks)
    for user in READERS:
        assert text.count(f"<@{user}>") == 1, (user, reply.text)
    for user in [*ABSENT, NEVER]:
        assert f"<@{user}>" not in text
    assert "Unknown speaker 1" in text
    named = [m["match"] for m in rec.result["voiceprints"] if m["match"]]
    assert sorted(named) == sorted(READERS), "each reader once, by person"
    assert "vp" not in str([m["confidence"] for m in rec.result["voiceprints"]]), "stored per person, not label"

    if kind == "server":
        jobs = watched.identify_labels
        assert len(jobs) == 4 and all(len(labels) <= LIMIT for labels in jobs), jobs  # 8 voiceprints, 2 a job
        sent = [label for labels in jobs for label in labels]
        stored = [v.label for u in [*READERS, *ABSENT] for v in await list_voiceprints(db, TEAM_ID, u)]
        assert sorted(sent) == sorted(stored), "every voiceprint compared exactly once"
        assert not any(u in label for label in sent for u in [*READERS, *ABSENT]), "labels never name anyone"


async def test_the_engine_server_refuses_more_voiceprints_than_its_limit(tmp_path):
    async with engine_server(FakeEngine(), tmp_path, limits=ServerLimits(max_voiceprints=LIMIT)) as server:
        unsplit = client_for(server)  # a client that does not split (pyannoteAI's 50)
        request = IdentifyRequest(url="media://none", voiceprints=[
            VoiceprintInput(label=f"vp{i}", voiceprint="x") for i in range(LIMIT + 1)])
        try:
            with pytest.raises(RequestError, match=f"at most {LIMIT} voiceprints per identify job"):
                await unsplit.submit_identify(request)
        finally:
            await unsplit.close()


async def test_a_batch_the_server_cannot_take_whole_leaves_no_part_behind(tmp_path):
    from bot.engine_server.app import ENGINE_SERVER
    from bot.errors import RateLimited
    from tests.engine_http_support import GatedEngine

    held = GatedEngine(FakeEngine())  # its jobs stay unfinished: the server's one worker and queue of one fill up
    async with engine_server(held, tmp_path / "engine", limits=ServerLimits(max_voiceprints=1, queue_size=1)) as srv:
        client = client_for(srv, attempts=1)
        client.max_voiceprints = 1
        media = tmp_path / "standup.wav"
        media.write_bytes(b"RIFF a recording")
        request = IdentifyRequest(url=await client.upload(media), voiceprints=[
            VoiceprintInput(label=f"vp{i}", voiceprint="x") for i in range(3)])
        try:
            with pytest.raises(RateLimited):  # two parts admitted, the third refused (429)
                await client.submit_identify(request)
            assert srv.app[ENGINE_SERVER].store.jobs == {}, "the admitted parts were deleted again"
        finally:
            held.gate.set()
            await client.close()
