"""When an ERA5-stage lead can be scored (spec section 1). Stdlib only, cheap to import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gaia.tasks.weather.variables import ERA5_DELAY_HOURS


def lead_available_at(
    init: datetime, lead_hours: int, *, delay_hours: int = ERA5_DELAY_HOURS
) -> datetime:
    """The moment ERA5 truth for `init + lead` exists: init + lead + 5 days + 6 h (UTC)."""
    if init.tzinfo is None:
        init = init.replace(tzinfo=UTC)
    return init.astimezone(UTC) + timedelta(hours=lead_hours + delay_hours)


def lead_is_available(
    init: datetime, lead_hours: int, now: datetime, *, delay_hours: int = ERA5_DELAY_HOURS
) -> bool:
    """True once `now >= lead_available_at(init, lead)`; a naive `now` is taken as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now >= lead_available_at(init, lead_hours, delay_hours=delay_hours)
