"""The scheduler: periodic duties that keep the queue healthy, run by one process.

`scitq scheduler` (`scitq.scheduler.app.Scheduler`) waits for the scheduler lock (a
PostgreSQL advisory lock, `scitq.scheduler.leadership`), then runs the duties of
`scitq.scheduler.duties` with APScheduler until it stops or loses the lock. Every duty is
short, idempotent and records its decisions in ``scitq.scheduler_decision``. Cloud
recruitment will add duties and ``providers/`` next to these.
"""

from __future__ import annotations
