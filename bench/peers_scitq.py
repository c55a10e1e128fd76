"""scitq client of bench/peers.py: ``python peers_scitq.py CONNINFO BATCH N``.

Submits N ``sh -c true`` tasks into a new batch through `scitq.Client` and waits for
them with `Client.wait`, as a user's script does; prints one JSON line with the seconds
from the start of the submit to the return of the wait.
"""

from __future__ import annotations

import json
import sys
import time

from scitq import Client

#: The agent's side alone: first task created to last execution finished.
SPAN = """
SELECT extract(epoch FROM max(e.finished_at) - min(t.created_at))::float
FROM scitq.task t JOIN scitq.execution e ON e.task_id = t.id WHERE t.batch_id = %s
"""

if __name__ == "__main__":
    url, batch, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Client(url) as client:
        start = time.perf_counter()
        client.submit_many(batch, [{"command": "true", "shell": True}] * count)
        final = client.wait(batch)
        seconds = time.perf_counter() - start
        span = client.connection.execute(SPAN, (client.batch_id(batch),)).fetchone()
    done = final.succeeded + final.failed
    print(json.dumps({"seconds": seconds, "finished": done, "server_seconds": span[0]}))
