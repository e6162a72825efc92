"""``tgfleet stats --plot``: the main daily series drawn to a PNG with matplotlib.

matplotlib is imported here only, when a plot is asked for; without it the CLI says
how to install it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from tgfleet.platform.errors import TgfleetError

#: (panel title, [(column, label)]) drawn one panel each.
PANELS = (
    ("Messages per day", [("messages_in", "in"), ("messages_out", "out")]),
    ("Active users per day", [("active_users", "active users")]),
    ("Matches per day", [("matches", "matches")]),
)


def plot_daily(rows: Sequence[dict[str, Any]], path: Path, *, title: str) -> None:
    """Draw messages in/out, active users and matches per day from ``rows`` to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise TgfleetError(
            "--plot needs matplotlib, which is not installed: pip install 'tgfleet[plot]'"
        ) from None
    if not rows:
        raise TgfleetError("nothing to plot: no roll-ups for this bot in that period")
    days = [date.fromisoformat(row["day"]) for row in rows]
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(9, 8), sharex=True)
    for ax, (panel, series) in zip(axes, PANELS, strict=True):
        for column, label in series:
            ax.plot(days, [row[column] or 0 for row in rows], marker="o", label=label)
        ax.set_title(panel, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        if len(series) > 1:
            ax.legend(loc="upper left", fontsize=8)
    axes[-1].xaxis.set_major_locator(mdates.AutoDateLocator(minticks=2, maxticks=10))
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    if len(days) <= 10:
        axes[-1].set_xticks(days)
    figure.suptitle(title)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
