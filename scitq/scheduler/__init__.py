"""The scheduler: periodic duties that keep the queue healthy, run by one process.

`scitq scheduler` (`scitq.scheduler.app.Scheduler`) waits for the scheduler lock (a
PostgreSQL advisory lock, `scitq.scheduler.leadership`), then runs the duties listed in
`scitq.scheduler.schedule` (`scitq.scheduler.duties`, `scitq.scheduler.recruit`) with
APScheduler until it stops or loses the lock. Every duty is short, idempotent and records
its decisions in ``scitq.scheduler_decision``. Cloud operations run outside the duties'
transactions (`scitq.scheduler.operations`) through the providers of
`scitq.scheduler.providers`.
"""

from __future__ import annotations
