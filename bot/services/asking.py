""""Is this you?": a speaker left unknown whose best match falls just under the threshold
(`NEAR_MATCH_FLOOR` ≤ confidence < threshold) is named to nobody in the channel; the person it probably is —
a member of the recording's channel at that moment — is asked privately, by DM, with "Yes, that's me" / "No".

Yes is a "This is me" claim (`bot.services.claims.correct`: shown as a claim, the summary edited in place, the
chart redrawn); No is remembered for that recording, so they are never asked about it again. Nothing in the
channel, the summary or anyone else's view says a near match existed. Every answer is checked against the
stored question (its recording, speaker and person), never against what the button carries beyond its id.
At most once: the questions are stored under the recording's lease and each is marked sent before its DM.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bot.errors import SlackCallError
from bot.schema import IdentifyOutput
from bot.services.claims import CLAIMED, claim_refusal, correct
from bot.services.context import Services, SlackPort
from bot.speech import matching
from bot.summary.ask import render_answered, render_question
from bot.summary.stats import summary_of

log = logging.getLogger(__name__)

NOT_YOURS = "This question was for someone else, so nothing was changed."
NO_LONGER = ("This question is no longer open (the recording was identified again, its results were deleted, or "
             "you deleted your voiceprints), so nothing was changed.")
ANSWERED = "You have answered this question already."
SAID_NO = "Thanks: you said that speaker is not you. You will not be asked about this recording again."


@dataclass(frozen=True)
class NearMatch:
    speaker: str  # the diarization label
    user_id: str  # the person it probably is
    confidence: float


def near_matches_of(result: dict | None, floor: float, threshold: float, *,
                    unambiguous_only: bool = True) -> list[NearMatch]:
    """The near matches of a stored (per-person: `bot.services.voiceprints.by_person`) identify result, the same
    for every engine: from each speaker's confidence map over people (`matching.near_matches`; the benchmark
    also measures it without `unambiguous_only`)."""
    if not result or floor <= 0 or "voiceprints" not in result:
        return []
    out = IdentifyOutput.model_validate(result)
    people = sorted({p for m in out.voiceprints for p in m.confidence})
    if not people:
        return []
    speakers = [m.speaker for m in out.voiceprints]
    best = np.array([[m.confidence.get(p, np.nan) for p in people] for m in out.voiceprints], dtype=np.float64)
    chosen = [people.index(m.match) if m.match in people else None for m in out.voiceprints]
    if any(m.match and m.match not in people for m in out.voiceprints):
        return []  # a match without a score: an engine without confidence maps asks nobody
    picked = matching.near_matches(best, chosen, floor, threshold, unambiguous_only=unambiguous_only)
    return [NearMatch(speakers[i], people[p], float(best[i, p])) for i, p in enumerate(picked) if p is not None]


def threshold_of(rec, default: float) -> float:
    """The threshold the stored result was matched at (its provenance), else the one in use now."""
    used = ((rec.result or {}).get("provenance") or {}).get("threshold")
    return float(used) if isinstance(used, int | float) else default


async def ask(services: Services, slack: SlackPort, rec, owner: str) -> bool:
    """After the summary is shown, under the recording's lease: asks each person a speaker left unknown probably
    is, once, by DM, if they are a member of the recording's channel now and could claim that speaker (else the
    question is skipped, never sent). False: the lease was lost. Slack failing to list the members or link the
    thread leaves the questions unsent (logged); the summary is not affected."""
    from storage.models import NearMatchState
    from storage.thread import settle_question, start_question, store_questions

    floor = services.settings.near_match_floor
    if floor <= 0 or rec.diarize_only or not rec.result:
        return True
    found = near_matches_of(rec.result, floor, threshold_of(rec, services.threshold))
    pending = await store_questions(services.db, rec.id, owner, [(q.speaker, q.user_id) for q in found])
    if pending is None:
        return False
    if not pending:
        return True
    try:
        members = set(await slack.channel_members(rec.channel_id))
        link = await slack.permalink(rec.channel_id, rec.posted_ts or rec.reply_ts)
    except SlackCallError as exc:
        log.warning("recording %s: questions not sent (%s)", rec.id, exc.error)
        return True
    summary = summary_of(rec)
    for q in pending:
        if q.user_id not in members or claim_refusal(rec, q.speaker, q.user_id):
            await settle_question(services.db, q.id, NearMatchState.skipped, expect=NearMatchState.pending)
            continue
        if not await start_question(services.db, q.id, owner):
            return False
        msg = render_question(summary, q.speaker, question_id=q.id, channel_id=rec.channel_id,
                              file_name=rec.file_name, permalink=link)
        try:
            dm_channel, dm_ts = await slack.post(q.user_id, msg)
        except SlackCallError as exc:  # at most once: a question whose DM failed is not sent again
            log.warning("recording %s: question %s not delivered (%s)", rec.id, q.id, exc.error)
            await settle_question(services.db, q.id, NearMatchState.skipped, expect=NearMatchState.sent)
            continue
        await settle_question(services.db, q.id, NearMatchState.sent, expect=NearMatchState.sent,
                              dm_channel=dm_channel, dm_ts=dm_ts)
        log.info("recording %s: question %s sent", rec.id, q.id)
    return True


async def answer(services: Services, slack: SlackPort, *, question_id: int, team_id: str | None, user: str,
                 yes: bool) -> tuple[str, bool]:
    """An answer to a question, checked against its stored row (the person, recording and speaker come from
    there, never from the press): only the person asked, once. Yes claims the speaker as "This is me" does
    (membership of the channel now, the claim rules, the summary edited in place, the chart redrawn); No is
    remembered. The question's DM then shows the outcome instead of its buttons. Returns the answer for the
    presser, and whether their DM shows it already."""
    from storage.models import NearMatchState
    from storage.thread import get_question, settle_question

    q = await get_question(services.db, question_id)
    if q is None or (team_id and q.team_id != team_id):
        return NO_LONGER, False
    if q.user_id != user:
        return NOT_YOURS, False
    if q.state in (NearMatchState.yes, NearMatchState.no):
        return ANSWERED, False
    if q.state != NearMatchState.sent:
        return NO_LONGER, False
    if yes:
        text = await correct(services, slack, rec_id=q.recording_id, speaker=q.speaker, team_id=q.team_id,
                             clicker=user, user_id=user, refusal=claim_refusal, done=CLAIMED)
        settled = text == CLAIMED and await settle_question(services.db, q.id, NearMatchState.yes,
                                                            expect=NearMatchState.sent, user_id=user)
    else:
        settled = await settle_question(services.db, q.id, NearMatchState.no, expect=NearMatchState.sent,
                                        user_id=user)
        text = SAID_NO if settled else ANSWERED
    if not (settled and q.dm_channel and q.dm_ts):
        return text, False
    msg = render_answered(text)
    try:
        await slack.update(q.dm_channel, q.dm_ts, msg)
    except SlackCallError as exc:
        log.info("question %s: its DM not updated (%s)", q.id, exc.error)
        return text, False
    return text, True
