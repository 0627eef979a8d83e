"""Server-side prepared statements with one generic plan, for statements run so often that
planning them costs as much as running them (the batch intake's two)."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import Connection

# One plan for every run, made by index: a plan made once must not depend on how many rows
# there were when it was made (on a new database, a sequential scan of the empty table
# would look cheapest and then stay, while the table grows).
_GENERIC = ("SET LOCAL plan_cache_mode = force_generic_plan; "
            "SET LOCAL enable_seqscan = off; ")

_PARAM = re.compile(r"%\((\w+)\)s::(\w+(?:\[\])?)")  # a parameter and its type


class Prepared:
    """A statement prepared once per connection and run with one generic plan. The plan is
    made again each time the connection has run it twice as often (10, 20, 40... times) and
    at least every 10 minutes, so that it follows the tables as they grow (a plan made on a
    new, empty database would otherwise stay, whatever the table became). Every parameter
    is written `%(name)s::type` in the SQL: that cast is its type in the PREPARE."""

    def __init__(self, name: str, sql: str, replan_s: float = 600.0) -> None:
        types = dict(_PARAM.findall(sql))  # in the order of first use
        names = list(types)
        body = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql)
        self.name, self.replan_s = name, replan_s
        self._prepare = f"PREPARE {name} ({', '.join(types.values())}) AS {body}"
        self._execute = _GENERIC + f"EXECUTE {name} ({', '.join(f'%({n})s' for n in names)})"

    def run(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Execute on a connection (SQLAlchemy's), preparing it there when due (a prepared
        statement lives as long as the connection, whatever its transactions do)."""
        info = conn.connection.info
        state = info.get(self.name)  # [executions, next replan at, prepared at]
        now = time.monotonic()
        if state is None or state[0] >= state[1] or now - state[2] > self.replan_s:
            if state is not None:
                conn.exec_driver_sql(f"DEALLOCATE {self.name}")
            conn.exec_driver_sql(self._prepare)
            runs = 0 if state is None else state[0]
            state = info[self.name] = [runs, max(10, runs * 2), now]
        state[0] += 1
        return conn.exec_driver_sql(self._execute, params)
