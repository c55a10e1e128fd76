"""The single database seam.

* `connection`: connections and the one translation of database errors;
* `query`: the one executor of named queries (`named_query`, sync, ``run_async`` and
  ``bind`` + `query.run_together` from one definition) and its result shapes;
* one wrapper module per entity, named like its file in ``scitq/sql/queries/``: `task`,
  `batch`, `execution`, `worker`, `recruitment`, `scheduler`, `web_user`, `report`;
* `rows`: the typed rows that reads return; `explain`: why a task is (not) running;
* `models`, `migrate`: the tables and the migrations.
"""

from __future__ import annotations
