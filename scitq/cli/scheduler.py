"""``scitq scheduler``: run the periodic duties (one active scheduler per database)."""

from __future__ import annotations

import dataclasses
import logging

import click

from scitq.cli import CliState, pass_state
from scitq.embedded import conninfo_for

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command()
@click.option(
    "--interval",
    "duty_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds between runs of lease expiry, timeouts and worker liveness [10].",
)
@click.option(
    "--timeout-grace",
    "timeout_grace_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds past a task's timeout before a kill signal, and after it before the "
    "execution is marked timed out [60].",
)
@click.option(
    "--output-retention-days",
    type=POSITIVE,
    default=None,
    help="Drop the output of succeeded attempts DAYS after their partition's last attempt "
    "ended (whole partitions) [keep it].",
)
@click.option(
    "--failed-output-retention-days",
    type=POSITIVE,
    default=None,
    help="Keep the output of attempts that did not succeed DAYS [forever].",
)
@click.option(
    "--event-retention-days",
    type=POSITIVE,
    default=None,
    help="Drop the task event log by whole partitions older than DAYS [keep it].",
)
@click.option(
    "--decision-retention-days",
    type=POSITIVE,
    default=None,
    help="Delete scheduler decisions older than DAYS [30].",
)
@click.option("--keep-decisions", is_flag=True, help="Never delete scheduler decisions.")
@click.option(
    "--retention-interval",
    "retention_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds between runs of the retention duty [3600].",
)
@click.option(
    "--lock-retry",
    "lock_retry_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds between attempts of a standby scheduler to take over [2].",
)
@click.option(
    "--recruit-interval",
    "recruit_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds between runs of the recruit duty [10].",
)
@click.option(
    "--idle-grace",
    "idle_grace_seconds",
    type=POSITIVE,
    default=None,
    help="Seconds a recruited worker may stay idle before its instance is destroyed [120].",
)
@pass_state
def scheduler(state: CliState, /, **options: object) -> None:  # fmt: skip
    """Run the scheduler: lease expiry, timeouts, worker liveness, retention, recruitment.

    Settings come from the [scheduler] table of the configuration file and SCITQ_SCHEDULER_*
    variables; these options override them.

    Start one on any machine that reaches the database; start more for failover: one is
    active, the others stand by and take over within seconds when it stops. Each decision
    is recorded in the view scitq.scheduler_log.
    """
    keep_decisions = bool(options.pop("keep_decisions"))
    given = {key: value for key, value in options.items() if value is not None}
    if keep_decisions:
        if "decision_retention_days" in given:
            raise click.UsageError(
                "--keep-decisions and --decision-retention-days exclude each other"
            )
        given["decision_retention_days"] = None
    settings = dataclasses.replace(state.settings().scheduler, **given)  # type: ignore[arg-type]
    conninfo = conninfo_for(state.settings().database)

    # a service says what it does (taking over, standing by, its decisions); APScheduler's
    # message for every run of every job is noise
    logging.getLogger("scitq.scheduler").setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)

    from scitq.scheduler.app import Scheduler  # APScheduler only for this command

    runner = Scheduler(settings, conninfo, transfer=state.settings().transfer)
    runner.install_signal_handlers()
    runner.run()
