"""`dmn schedule`: set the cron schedule of a deployment (the weekly retrain, say) on the Prefect server."""

from __future__ import annotations

from pydantic import ValidationError

from dmn.errors import ConfigError


def cron_schedule(cron: str, timezone: str = "UTC"):
    """A Prefect CronSchedule, or a ConfigError naming --cron when `cron` is not a cron expression."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as error:
        raise ConfigError(
            f"--cron {cron!r} (timezone {timezone!r}) is not a cron schedule: five fields, "
            "minute hour day-of-month month day-of-week, e.g. '0 3 * * 1'"
        ) from error


def set_schedule(deployment: str, cron: str, timezone: str = "UTC", active: bool = True) -> str:
    """Replace the schedule of `deployment` ('flow/deployment'); the deployment is untouched on bad input."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    schedule = cron_schedule(cron, timezone)
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound as error:
            raise ConfigError(f"no deployment {deployment!r} on {client.api_url}") from error
        existing = client.read_deployment_schedules(found.id)
        if existing:
            client.update_deployment_schedule(found.id, existing[0].id, active=active, schedule=schedule)
        else:
            client.create_deployment_schedules(found.id, [(schedule, active)])
    return f"{deployment}: {cron} ({timezone}), {'active' if active else 'inactive'}"
