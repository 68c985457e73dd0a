"""The integration tests' own fixture: `make_world` (tests/integration/worlds.py).

The real servers' fixtures (smtp_server, smtp_sink_process, dovecot, imap_user,
private_dovecot) are in tests/conftest.py.
"""

from __future__ import annotations

from worlds import make_world  # noqa: F401  (a fixture)
