"""The reader on PostgreSQL: autocommit, and the pool's connections left as they were.

A read through `engine.reader` was BEGIN, the query and ROLLBACK (three
round trips); in autocommit it is the query alone. The connection goes
back to the pool in transaction mode, for the writers that take it next.
"""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from dripd.store import engine as store_engine

pytestmark = pytest.mark.postgres


def test_a_read_opens_no_transaction_and_a_writer_after_it_has_one(postgres_url: str) -> None:
    engine = store_engine.open_engine(postgres_url)
    try:
        with store_engine.reader(engine).connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            reader_pid = driver.info.backend_pid
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.info.backend_pid == reader_pid  # the same connection, from the pool
            conn.execute(sa.text("select 1"))
            assert driver.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            conn.rollback()
    finally:
        engine.dispose()
