"""The chart step of a recording's job: the recording's one timeline chart in its thread, uploaded at most once
(its start recorded under the lease first, so a worker taking over never uploads another) and replaced, never
added to, when the result changes. The drawing and the Slack calls are `bot.services.charts`."""
from __future__ import annotations

import asyncio
import logging

from bot.errors import SlackCallError
from bot.failures import new_ref
from bot.jobs.leases import LeaseLost, RecordingRows
from bot.pools import CpuPool, TaskSet
from bot.services.charts import redraw_chart, send_timeline, timeline
from bot.services.context import Services, SlackPort
from bot.summary.stats import Summary
from storage.models import Recording

log = logging.getLogger(__name__)


class ChartStep:
    """The recording job's chart step, working on the rows the job holds (`rows`): drawn in `cpu`; a redraw
    for a correction made meanwhile runs on its own in `background`."""

    def __init__(self, services: Services, rows: RecordingRows, cpu: CpuPool, background: TaskSet) -> None:
        self.services, self.rows, self.cpu, self.background = services, rows, cpu, background

    async def show(self, slack: SlackPort, rec: Recording, summary: Summary, *, alt: str) -> None:
        """After the summary (of `rec`, as `summary` shows it) is shown: the first chart, or a new one for a result
        identified again. A failure never undoes the summary."""
        from storage.thread import CHART, chart_posted, get_output, start_chart

        db, owner = self.rows.db, self.rows.owner
        chart = await get_output(db, rec.id, CHART)
        if chart.started_at is None:
            if not await start_chart(db, rec.id, owner):
                raise LeaseLost()
            chart_id = await self.upload(slack, rec, summary, alt)
            if chart_id:  # stored at once, with the relabels it shows, so a correction can redraw it
                if not await chart_posted(db, rec.id, owner, chart_id, rec.relabel_seq):
                    raise LeaseLost()
                await self._follow_corrections(slack, rec)
        elif chart.file_id and chart.seq != rec.relabel_seq:
            await self.redraw(slack, rec)  # identified again: the one chart is replaced, as after a correction

    async def upload(self, slack: SlackPort, rec: Recording, summary: Summary, alt: str) -> str | None:
        """Draw, then renew the lease right before the one step that is not idempotent (the upload)."""
        try:
            png = await timeline(self.cpu, slack, rec, summary)
            await self.rows.beat(rec)
            return await send_timeline(slack, rec, png, alt)
        except LeaseLost:
            raise
        except SlackCallError as exc:
            log.warning("recording %s: chart upload failed: %s", rec.id, exc.error)
            return None
        except Exception:  # the summary is already posted: a missing chart must not undo it
            log.exception("recording %s: chart could not be drawn", rec.id)
            return None

    async def redraw(self, slack: SlackPort, rec: Recording) -> None:
        """Redraws the chart for a new result (under the per-recording chart lock, like a correction's redraw:
        the new chart is stored before the old one is deleted)."""
        await self.rows.beat(rec)
        try:
            await redraw_chart(self.services, self.cpu, slack, rec.id)
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            detail = exc.error if isinstance(exc, SlackCallError) else f"{type(exc).__name__}: {exc}"
            log.warning("recording %s: chart not redrawn (%s) [ref %s]", rec.id, detail, new_ref(),
                        exc_info=not isinstance(exc, SlackCallError))

    async def _follow_corrections(self, slack: SlackPort, rec: Recording) -> None:
        """A correction made while the chart was drawn found no chart to redraw: redraw it now."""
        if (await self.rows.get(rec.id)).relabel_seq != rec.relabel_seq:
            self.background.spawn(redraw_chart(self.services, self.cpu, slack, rec.id), name=f"chart {rec.id}")
