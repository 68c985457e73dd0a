"""The PostgreSQL server the tests and benchmarks make their databases on.

It is not started here: `./dev` starts the machine's PostgreSQL (trust auth on
127.0.0.1:5432). `Server` creates databases on it through an admin URL
(DRIPD_TEST_POSTGRES_URL), empty or copied from a template, and drops them.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

from dripd.store import engine as store_engine

URL = os.environ.get("DRIPD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Server:
    """Databases made on the server of an admin URL; the ones still there are dropped at close."""

    def __init__(self, admin: sa.Engine, url: str = URL, prefix: str = "dripd_t_") -> None:
        self.admin = admin  # AUTOCOMMIT: CREATE and DROP DATABASE can't run in a transaction
        self.url = url
        self.prefix = prefix  # of the names of the databases made here
        self._made: list[str] = []

    @staticmethod
    def connect(url: str = URL, prefix: str = "dripd_t_") -> Server | None:
        """The server at `url`, or None when it does not answer."""
        admin = sa.create_engine(store_engine.engine_url(url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text("select 1"))
        except sa.exc.OperationalError:
            admin.dispose()
            return None
        return Server(admin, url, prefix)

    def url_of(self, name: str) -> str:
        """A config's `postgresql://` URL for database `name` on this server."""
        url = sa.engine.make_url(self.url).set(database=name)
        return url.render_as_string(hide_password=False)

    def create(self, *, template: str | None = None, prefix: str | None = None) -> str:
        """A new database, empty or a copy of database `template`; its URL."""
        name = f"{prefix or self.prefix}{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        self._made.append(name)
        return self.url_of(name)

    def drop(self, url: str) -> None:
        """Drop the database of `url` (made by `create`), even with sessions still on it."""
        name = str(sa.engine.make_url(url).database)
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._made.remove(name)

    def close(self) -> None:
        for name in list(self._made):
            self.drop(self.url_of(name))
        self.admin.dispose()
