"""Statements run below SQLAlchemy's per-call layer: the per-email ones, and bulk inserts."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from dripd.store.schema import UTCDateTime

T = TypeVar("T")


class Prepared:
    """A statement compiled once per dialect and run straight on the DBAPI connection.

    For the statements run once or more per email (the outbox's claim and
    marks, the engine's enrollment updates and events). `Connection.execute`
    spends ~100 µs a call around a ~10 µs SQLite statement: cache-key and
    parameter processing, result set-up, events. This keeps SQLAlchemy for
    what it is good at (the SQL of each dialect, the columns' bind processors,
    so stored values are exactly what `Connection.execute` stores) and does
    the per-call part by hand. Runs inside the caller's transaction.

    `keys`: for an UPDATE or INSERT without `.values()`, the columns it sets.
    """

    def __init__(self, statement: Any, keys: Sequence[str] = ()) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, conn: sa.Connection) -> _Compiled:
        # Outside SQLAlchemy's transaction, psycopg would open one SQLAlchemy
        # doesn't know of, and returning the connection to the pool rolls it back.
        if not conn.in_transaction():
            raise RuntimeError("a Prepared statement runs inside a transaction (engine.begin())")
        return self._of(conn.dialect)

    def _of(self, dialect: sa.Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _Compiled.of(
                self.statement, self.keys, dialect
            )
        return compiled

    def driver_statement(self, dialect: sa.Dialect, params: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL and the parameters as `dialect`'s driver takes them, to run elsewhere."""
        compiled = self._of(dialect)
        return compiled.sql, compiled.parameters(params)

    def results(self, dialect: sa.Dialect, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """A SELECT's rows read by `dialect`'s driver, converted as SQLAlchemy's result converts.

        By the selected columns' result processors (UTCDateTime: aware UTC datetimes).
        """
        processors = self._of(dialect).results
        if not any(processors):
            return list(rows)
        return [
            tuple(
                [value if p is None else p(value) for p, value in zip(processors, row, strict=True)]
            )
            for row in rows
        ]

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """A SELECT's rows as the driver hands them (its tuples), with no result processing.

        On the driver's cursor, as `execute`: no per-call compiling or cache
        key, no Row made of each row (most of SQLAlchemy's share of reading
        `schedule`'s due rows), no type processing of the values read (the
        caller converts what it uses), errors as SQLAlchemy's. The
        connection's transaction is begun first, as SQLAlchemy's own call
        would: on SQLite a reader's deferred BEGIN, so that the pages of one
        listing read one snapshot (PostgreSQL's readers are in autocommit).
        """
        if not conn.in_transaction():
            conn.begin()  # ended with the connection, as one begun by a statement is
        compiled = self._of(conn.dialect)
        parameters = compiled.parameters(params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, parameters)
            return cursor.fetchall()  # type: ignore[no-any-return]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _driver_error(conn, cursor, exc, compiled.sql, parameters) from exc
        finally:
            cursor.close()

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Run once; the number of rows it changed.

        On the driver's cursor, its errors raised as SQLAlchemy's
        (`_driver_error`): through `exec_driver_sql` a claim spent a quarter
        of its Python in SQLAlchemy's execution context and result.
        """
        compiled = self._for(conn)
        parameters = compiled.parameters(params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, parameters)
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as exc:
            if not compiled.checked:
                raise
            raise _driver_error(conn, cursor, exc, compiled.sql, parameters) from exc
        finally:
            cursor.close()

    def executemany(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._for(conn)
        if compiled.checked:
            conn.exec_driver_sql(compiled.sql, [compiled.parameters(row) for row in rows])
            return
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, [compiled.parameters(row) for row in rows])
        finally:
            cursor.close()


def _driver_error(
    conn: sa.Connection, cursor: Any, exc: Any, sql: str, parameters: Any
) -> sa.exc.StatementError:
    """A driver's error on `conn` as SQLAlchemy raises it; a lost connection is invalidated.

    As SQLAlchemy's own statements do, so that store/retry.py tells a lost
    connection (`connection_invalidated`) and a transient abort (`orig`'s
    sqlstate) apart, and the pool replaces the connection.
    """
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    error: sa.exc.StatementError = sa.exc.DBAPIError.instance(
        sql,
        parameters,
        exc,
        conn.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    return error


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # parameter order (qmark), None for named parameters
    static: dict[str, Any]  # values written in the statement (`status == "queued"`)
    processors: tuple[tuple[str, Any], ...]  # bind name, the column type's bind processor
    # PostgreSQL: errors raised as SQLAlchemy's (`execute` by `_driver_error`,
    # `executemany` through SQLAlchemy's driver-level call), a lost connection
    # dropped from the pool, so the work can be retried (store/retry.py).
    # SQLite's statements (~10 µs) raise the driver's: no connection to lose.
    checked: bool
    results: tuple[Any, ...]  # a SELECT's columns' result processors (None: as read)

    @classmethod
    def of(cls, statement: Any, keys: tuple[str, ...], dialect: sa.Dialect) -> _Compiled:
        # for_executemany: no implicit RETURNING of the new id on PostgreSQL
        compiled = statement.compile(
            dialect=dialect, column_keys=list(keys) or None, for_executemany=True
        )
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        processors = tuple(
            (name, fn)
            for name, bind in binds.items()
            if (fn := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        return cls(
            sql=str(compiled),
            names=tuple(compiled.positiontup) if compiled.positional else None,
            static={name: b.effective_value for name, b in binds.items() if not b.required},
            processors=processors,
            checked=dialect.name != "sqlite",
            results=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in getattr(statement, "selected_columns", ())
            ),
        )

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = {**self.static, **params}
        for name, process in self.processors:
            if name in values:
                values[name] = process(values[name])
        if self.names is None:
            return values
        return tuple([values[name] for name in self.names])


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """A SELECT with its parameters, and what its rows become: run through SQLAlchemy or a driver.

    The same read either way (dripd.daemon.claims runs it on the event loop's
    own PostgreSQL connections): `convert` takes the rows as SQLAlchemy's
    result gives them, which `converted` makes of the driver's.
    """

    prepared: Prepared
    params: Mapping[str, Any]
    convert: Callable[[Sequence[Sequence[Any]]], T]

    def run(self, conn: sa.Connection) -> T:
        return self.convert(conn.execute(self.prepared.statement, self.params).all())

    def driver_statement(self, dialect: sa.Dialect) -> tuple[str, Any]:
        return self.prepared.driver_statement(dialect, self.params)

    def converted(self, dialect: sa.Dialect, rows: Sequence[Sequence[Any]]) -> T:
        return self.convert(self.prepared.results(dialect, rows))


_PREPARED: dict[tuple[int, tuple[str, ...]], Prepared] = {}


def prepared(statement: Any, keys: Iterable[str]) -> Prepared:
    """The Prepared form of `statement` setting the columns `keys` (a few sets are used).

    Keyed by the statement's id: only for the module's own statement constants.
    """
    cache_key = (id(statement), tuple(keys))
    found = _PREPARED.get(cache_key)
    if found is None:
        found = _PREPARED[cache_key] = Prepared(statement, cache_key[1])
    return found


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """Insert many rows with one driver-level executemany.

    Imports of 100,000 contacts spent most of their time in SQLAlchemy's
    per-row parameter processing. This compiles the INSERT once for the
    connection's dialect and hands the driver plain values, converted by the
    columns' own bind processors (so stored values are exactly what
    `sa.insert` would store), with each distinct value converted once.
    """
    if not rows:
        return
    plan = _bulk_plan(conn.dialect, table, tuple(rows[0]), ignore_conflicts)
    getter = operator.itemgetter(*plan.order)
    values: list[Any] = (
        [getter(row) for row in rows]
        if len(plan.order) > 1
        else [(row[plan.order[0]],) for row in rows]
    )
    if plan.convert:
        values = _apply(values, plan.convert)
    params: Sequence[Any] = (
        values if plan.positional else [dict(zip(plan.order, v, strict=True)) for v in values]
    )
    conn.exec_driver_sql(plan.sql, params)


def insert_tuples(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows`, tuples of values in `columns` order, with one driver-level executemany.

    For an import's millions of rows: no dict per row and no conversion pass.
    The values must be what the driver takes: a column whose type converts
    (UTCDateTime) gets `driver_value(conn, column, value)`, converted once by
    the caller for the value most rows share.
    """
    if rows:
        conn.exec_driver_sql(_insert_sql(conn.dialect, table, tuple(columns)), rows)


def driver_value(conn: sa.Connection, column: sa.Column[Any], value: Any) -> Any:
    """`value` as `column`'s bind processor hands it to the driver (what `sa.insert` stores)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if process is None or value is None else process(value)


@functools.lru_cache(maxsize=64)
def _insert_sql(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> str:
    """INSERT of `columns` with positional parameters in the driver's own style."""
    marks_of = {"qmark": "?", "format": "%s", "pyformat": "%s"}  # pysqlite; psycopg
    mark = marks_of[dialect.paramstyle]
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(name) for name in columns)
    marks = ", ".join([mark] * len(columns))
    return f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({marks})"


@dataclass(frozen=True, slots=True)
class _BulkPlan:
    sql: str
    positional: bool
    order: tuple[str, ...]  # the columns in parameter order
    convert: list[tuple[int, Any]]  # parameter index, converter


@functools.lru_cache(maxsize=64)
def _bulk_plan(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], ignore_conflicts: bool
) -> _BulkPlan:
    """The INSERT of `columns`, compiled once (~1 ms each time: the engine inserts per chunk)."""
    statement = _insert_for(dialect.name, table, ignore_conflicts)
    compiled = statement.values({name: sa.bindparam(name) for name in columns}).compile(
        dialect=dialect
    )
    order = tuple(compiled.positiontup or columns) if compiled.positional else columns
    convert = [
        (i, fn)
        for i, name in enumerate(order)
        if (fn := _converter(table.c[name].type, dialect)) is not None
    ]
    return _BulkPlan(
        sql=str(compiled), positional=compiled.positional, order=order, convert=convert
    )


def _insert_for(dialect: str, table: sa.Table, ignore_conflicts: bool) -> Any:
    """INSERT, or INSERT that skips rows violating a unique constraint."""
    if not ignore_conflicts:
        return sa.insert(table)
    if dialect == "postgresql":
        return sa.dialects.postgresql.insert(table).on_conflict_do_nothing()
    return sa.dialects.sqlite.insert(table).on_conflict_do_nothing()


def _apply(values: list[tuple[Any, ...]], convert: list[tuple[int, Any]]) -> list[Any]:
    """`values` with the converted columns replaced, column by column (zip is C, a row loop not)."""
    columns: list[Any] = list(zip(*values, strict=True))
    for i, fn in convert:
        columns[i] = [fn(value) for value in columns[i]]
    return list(zip(*columns, strict=True))


def _converter(column_type: Any, dialect: Any) -> Any:
    """A cached bind processor for a column type, or None when values pass as they are."""
    if not isinstance(column_type, UTCDateTime):
        return None
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    # A bulk import stamps most rows with the same instant: convert it once.
    return functools.lru_cache(maxsize=4096)(process)
