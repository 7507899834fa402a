"""The timeline chart: one lane per speaker, time on the x axis, as PNG bytes (matplotlib, Agg backend)."""
from __future__ import annotations

import io

from bot.summary.stats import Summary, clock

UNKNOWN_COLOUR = "#9e9e9e"


def lane_names(summary: Summary, names: dict[str, str] | None = None) -> list[str]:
    """Readable lane labels: a person's display name (from `names`, keyed by Slack user id) or Unknown N
    (Speaker N for a diarize-only result),
    with who claimed it, as the summary says."""
    names = names or {}
    out = []
    for s in summary.speakers:
        if s.user_id:
            out.append(names.get(s.user_id, s.user_id))
            continue
        claim = f" (claimed by {names.get(s.claimed_by, s.claimed_by)})" if s.claimed_by else ""
        out.append(f"{'Speaker' if summary.diarize_only else 'Unknown speaker'} {s.unknown_index}{claim}")
    return out


def timeline_png(summary: Summary, names: dict[str, str] | None = None, *, title: str = "") -> bytes:
    """Render the chart; the lanes follow the summary's order (most talk time on top)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    labels = lane_names(summary, names)
    lanes = max(len(labels), 1)
    fig = Figure(figsize=(10, 1.2 + 0.45 * lanes), dpi=100)
    ax = fig.add_subplot()
    palette = matplotlib.colormaps["tab10"].colors
    index = {s.speaker: i for i, s in enumerate(summary.speakers)}
    known = 0
    for i, s in enumerate(summary.speakers):
        colour = palette[known % len(palette)] if s.user_id else UNKNOWN_COLOUR
        known += 1 if s.user_id else 0
        bars = [(seg.start, seg.end - seg.start) for seg in summary.segments if seg.speaker == s.speaker]
        ax.broken_barh(bars, (lanes - 1 - index[s.speaker] - 0.35, 0.7), facecolors=colour)
    ax.set_yticks(range(lanes))
    # Names and titles are people's text: never parsed as mathtext (`$…$` would render, or fail the chart).
    ax.set_yticklabels(list(reversed(labels)) if labels else [""], parse_math=False)
    ax.set_ylim(-0.6, lanes - 0.4)
    ax.set_xlim(0, max(summary.duration, 1.0))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x)))
    ax.set_xlabel("time")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=11, loc="left", parse_math=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
