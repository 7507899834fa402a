"""A file name is shown as inert text wherever the bot writes it to Slack: no link (a name like
`https://evil.example/x.m4a`), no bold, italics, strike or code, no emoji, no @here or #channel, no block
quote, no second line. End to end: signed requests to the real endpoint, the fake Slack Web API, a fake engine;
every text and mrkdwn object the bot posts (progress reply, summary, failure, enrollment answer) is read as
Slack would read it. Slack's mrkdwn has no escape character, so the names' markers are shown as look-alike
characters, and every Block Kit mrkdwn object is `verbatim` (Slack auto-links nothing in it)."""
from __future__ import annotations

import re

import pytest
import pytest_asyncio

from bot.schema import utcnow
from bot.summary.status import transcript_line
from bot.text import escape
from storage.database import Database
from storage.migrate import upgrade
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, enroll, wait_status

CHANNEL = "C0001"
HOSTILE = [
    "https://evil.example/x.m4a",
    "*urgent* _all_ ~hands~ `now`.m4a",
    "@here @channel :rotating_light: #general.m4a",
    "> quoted\nSpeakers in x: @everyone.m4a",
    "www.evil.example <https://evil.example|click> &amp; more.m4a",
    "\u202eevil\u202c\u2028line\u0085two.m4a",
]
# What Slack would read as markup in a piece of text: the markers of bold, italics, strike and code, a link
# (scheme:// or www.), an emoji, a mention or channel, `<` (escaped as &lt; when meant as text), a block quote.
LIVE = [re.compile(p, re.IGNORECASE) for p in (
    r"[*_~`]", r"\b[a-z][a-z0-9+.-]*://", r"\bwww\.", r":[a-z0-9_+'-]+:", r"[@#][a-z]", r"<", r"(^|\n)\s*(&gt;|>)")]


def live_markup(text: str) -> list[str]:
    return [m.group() for pattern in LIVE for m in pattern.finditer(text)]


def mrkdwn_objects(blocks: list) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def assert_shown_inert(name: str, text: str, blocks: list, *, ours: tuple[str, ...] = ()) -> None:
    """`text` (the message's own text, markup of ours removed) holds no live markup and shows the name;
    every mrkdwn object is verbatim and holds the name only in its inert form."""
    shown = escape(name)
    assert shown in text, (shown, text)
    plain = text
    for own in ours:
        plain = plain.replace(own, "")
    assert live_markup(plain) == [], (name, text)
    for obj in mrkdwn_objects(blocks):
        assert obj.get("verbatim") is True, obj
        assert name not in obj["text"] and live_markup(shown) == [], obj


def test_every_hostile_name_escapes_to_inert_text_on_one_line():
    for name in HOSTILE:
        shown = escape(name)
        assert live_markup(shown) == [] and "\n" not in shown and "\u2028" not in shown, shown
    assert escape("standup 2024-05-01.m4a") == "standup 2024-05-01.m4a"  # ordinary names as they are


def test_the_transcript_link_label_is_inert():
    for name in HOSTILE:
        line = transcript_line(name, url="https://files.slack.com/files-pri/T1-F1/t.md")
        label = re.fullmatch(r"\*Transcript:\* <https://files\.slack\.com/files-pri/T1-F1/t\.md\|(.*)> .*", line)
        assert label and live_markup(label.group(1)) == [] and "|" not in label.group(1), line


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1", "UBOT"]
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('inert-names') / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = FakeEngine({"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 5}],
                         "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 90.0}}]})
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine=engine.engine_id, model_id="m",
                            voiceprint="AAAA", consent_at=utcnow(), clip_duration=10.0)
    bot = await BotUnderTest(fake, bot_settings(fake, url, job_max_attempts=1), db, engine, cpu=shared_cpu()).start()
    yield fake, db, bot
    await bot.stop()
    await db.dispose()
    await fake.close()


e2e = pytest.mark.asyncio(loop_scope="module")


def posted_in(fake: FakeSlack, thread_ts: str) -> list[tuple[str, list]]:
    """Every text and blocks the bot posted or edited in the thread, in order."""
    ours = {m.ts for m in fake.thread(CHANNEL, thread_ts)}
    return [(c.params.get("text", ""), c.params.get("blocks") or []) for c in fake.calls
            if (c.method == "chat.postMessage" and c.params.get("thread_ts") == thread_ts)
            or (c.method == "chat.update" and c.params.get("ts") in ours)]


@e2e
@pytest.mark.parametrize("name", HOSTILE)
async def test_progress_and_summary_show_the_name_as_inert_text(world, name):
    fake, db, bot = world
    f = fake.add_file(name, "audio/mp4", b"RIFF meeting audio")
    event = bot.share_event(f)
    assert (await bot.event(event, event_id=f"Ev-{f.id}")).status == 200
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    messages = posted_in(fake, event["ts"])
    progress = [m for m in messages if m[0].startswith("Identifying speakers in")]
    summaries = [m for m in messages if m[0].startswith("Speakers in")]
    assert progress and summaries, messages
    for text, blocks in progress:
        assert_shown_inert(name, text, blocks)
    for text, blocks in summaries:
        assert_shown_inert(name, text, blocks, ours=("<@U1>",))
        assert blocks[0]["text"] == {"type": "plain_text", "text": f"Who spoke in {name}", "emoji": False}


@e2e
async def test_a_failure_shows_the_name_as_inert_text(world):
    fake, db, bot = world
    name = HOSTILE[1]
    f = fake.add_file(name, "audio/mp4", b"", serve_html=True)
    event = bot.share_event(f)
    await bot.event(event, event_id=f"Ev-{f.id}")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.error_code == "html_page"
    # A failed state is stored before its reply is edited: wait for the reply.
    failures = await fake.wait_for(
        lambda: [m for m in posted_in(fake, event["ts"]) if m[0].startswith("Could not identify")],
        what="the failure reply")
    for text, blocks in failures:
        assert_shown_inert(name, text, blocks)


@e2e
@pytest.mark.parametrize(("user", "name"), [("U2", HOSTILE[1]), ("U3", HOSTILE[2])])
async def test_an_enrollment_answer_shows_the_clip_name_as_inert_text(world, user, name):
    """(A URL in a shown reason is replaced by "(link removed)" before it is escaped.)"""
    fake, _, bot = world
    before = len(fake.calls_to("views.update"))
    answer = await enroll(bot, fake, user, b"RIFF", name=name, serve_html=True)
    assert "web page instead of" in answer
    # The job DMs the answer, then shows it in the modal: wait for the modal too.
    [update] = await fake.wait_for(lambda: fake.calls_to("views.update")[before:], what="the modal's answer")
    assert_shown_inert(name, answer, update.params["view"]["blocks"], ours=(":warning:",))
    assert [live_markup(t.replace(":warning:", "")) for t in dms(fake, user)] == [[]]
