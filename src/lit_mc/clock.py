"""The clock time a long command stops starting work at: a session ends at a fixed time, and a run that starts just
before would be lost with it, so campaigns take ``--stop-at HH:MM`` and let only the runs in flight finish."""

from __future__ import annotations

import datetime as dt

from lit_mc.errors import LitMcError


def next_clock_time(now: dt.datetime, hour: int, minute: int) -> dt.datetime:
    """The first ``hour:minute`` after ``now``: a session that starts at 22:00 and says 00:20 means tomorrow."""
    stop = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return stop if stop > now else stop + dt.timedelta(days=1)


def stop_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``HH:MM`` (``--stop-at``) as the next such time after ``now``."""
    hour, sep, minute = text.partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise LitMcError(f"--stop-at {text!r} is not a clock time", "give hours and minutes, e.g. --stop-at 21:10")
    return next_clock_time(now or dt.datetime.now(), int(hour), int(minute))
