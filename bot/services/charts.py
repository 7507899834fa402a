"""The timeline chart: drawn in the process pool with today's names and uploaded into the recording's thread.

It follows corrections: after "This is me", "Undo claim" or "Not me" it is drawn again with the new names,
uploaded, and the old chart file deleted.

Racing corrections (in any process) are serialised per recording by a lock row in the database: the holder
redraws until the chart in Slack shows the latest relabel (its `seq` equals `relabel_seq`), and releases the lock
only in the same statement that checks it, so a correction that found the lock taken is still drawn, and
the thread ends with exactly one chart.
"""
from __future__ import annotations

import logging
import uuid

from bot.errors import SlackCallError
from bot.pools import CpuPool
from bot.services.context import Services, SlackPort
from bot.summary.blocks import fallback_text
from bot.summary.chart import timeline_png
from bot.summary.stats import Summary, summary_of
from storage.models import Recording, RecordingOutput

log = logging.getLogger(__name__)

CHART_LOCK_SECONDS = 120


async def delete_file(slack: SlackPort, file_id: str | None) -> None:
    """Deletes a file the bot uploaded; one that is already gone is fine."""
    if not file_id:
        return
    try:
        await slack.delete_file(file_id)
    except SlackCallError as exc:
        log.warning("could not delete chart %s: %s", file_id, exc.error)


async def redraw_chart(services: Services, cpu: CpuPool, slack: SlackPort, rec_id: int) -> None:
    """Brings the recording's chart in line with its relabels, unless another redrawer holds the lock (it
    then draws this correction too). A recording whose chart was never posted has nothing to redraw."""
    from storage.recordings import get_recording
    from storage.thread import CHART, get_output, lock_chart, unlock_chart

    me = uuid.uuid4().hex
    if not await lock_chart(services.db, rec_id, me, CHART_LOCK_SECONDS):
        return
    released = False
    try:
        while not released:
            chart = await get_output(services.db, rec_id, CHART)
            rec = await get_recording(services.db, rec_id)
            if rec is None or chart.lock_owner != me or rec.result is None:
                return
            if chart.seq != rec.relabel_seq and not await replace(services, cpu, slack, rec, chart, me):
                return
            released = await unlock_chart(services.db, rec_id, me)
            if not released and not await lock_chart(services.db, rec_id, me, CHART_LOCK_SECONDS):
                return  # lost the lock (it expired): its new holder finishes the job
    finally:
        if not released:
            await unlock_chart(services.db, rec_id, me, force=True)


async def replace(services: Services, cpu: CpuPool, slack: SlackPort, rec: Recording, chart: RecordingOutput,
                  me: str) -> bool:
    """One redraw of `chart`: the new chart is uploaded and recorded before the old one is deleted, so the thread
    never lacks a chart. False when the lock was lost meanwhile (the new upload is then removed again)."""
    from storage.thread import replace_chart

    summary = summary_of(rec)
    new_id = await send_timeline(slack, rec, await timeline(cpu, slack, rec, summary),
                                 fallback_text(summary, rec.file_name))
    if not new_id:
        raise RuntimeError("Slack returned no file id for the redrawn chart")
    if not await replace_chart(services.db, rec.id, me, new_id, rec.relabel_seq):
        await delete_file(slack, new_id)
        return False
    await delete_file(slack, chart.file_id)
    log.info("recording %s: chart redrawn after a correction", rec.id)
    return True


def draw_chart(summary: Summary, names: dict[str, str], title: str) -> bytes:
    """Top-level so the process pool can pickle it."""
    return timeline_png(summary, names, title=title)


def people(summary: Summary) -> list[str]:
    """Everyone a summary names or shows as a claimant."""
    return [uid for s in summary.speakers for uid in (s.user_id, s.claimed_by) if uid]


async def timeline(cpu: CpuPool, slack: SlackPort, rec: Recording, summary: Summary) -> bytes:
    """The chart PNG with today's names, drawn in the process pool (never on the event loop)."""
    names = await display_names(slack, people(summary))
    return await cpu.run(draw_chart, summary, names, rec.file_name)


async def send_timeline(slack: SlackPort, rec: Recording, png: bytes, alt: str) -> str | None:
    """Uploads the chart into the recording's thread; returns its file id."""
    return await slack.upload(channel=rec.channel_id, thread_ts=rec.thread_ts or rec.message_ts, content=png,
                              filename="timeline.png", title=f"Who spoke when in {rec.file_name}", alt=alt[:1000])


async def display_names(slack: SlackPort, user_ids: list[str]) -> dict[str, str]:
    """Slack user id → a readable name for the chart; the id itself when Slack does not say."""
    names: dict[str, str] = {}
    for uid in dict.fromkeys(user_ids):
        try:
            user = await slack.user_info(uid)
            profile = user.get("profile") or {}
            names[uid] = profile.get("display_name") or user.get("real_name") or user.get("name") or uid
        except SlackCallError:
            names[uid] = uid
    return names
