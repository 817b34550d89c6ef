"""PostgreSQL queue backend (``postgresql://`` and ``postgres://``), on asyncpg.

Modules: :mod:`.options` (URL options), :mod:`.migrations` (versioned schema, applied on open),
:mod:`.statements` (all SQL), :mod:`.rows` (rows <-> jobs), :mod:`.connection` (pool and
reconnect with backoff), :mod:`.listener` (LISTEN/NOTIFY wake-ups), :mod:`.batching`,
:mod:`.claiming`, :mod:`.completing` and :mod:`.fusing` (concurrent calls of one process share a
statement), :mod:`.queue` (the Queue).

Why asyncpg rather than psycopg 3: it speaks the binary protocol natively, prepares and caches
every statement per connection automatically, and decodes rows in C; in our workload (short
statements, many round trips) that is the fastest Python driver. psycopg 3 async would also do
(it has pipelining and server-side binding) and is the alternative if libpq features are needed.
"""

from gaia.validator.queues.postgres.connection import DatabaseUnavailable
from gaia.validator.queues.postgres.options import PostgresOptions, parse_postgres_url
from gaia.validator.queues.postgres.queue import PostgresQueue, open_postgres_queue

__all__ = [
    "DatabaseUnavailable",
    "PostgresOptions",
    "PostgresQueue",
    "open_postgres_queue",
    "parse_postgres_url",
]
