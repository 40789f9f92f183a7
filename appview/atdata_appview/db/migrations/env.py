"""Alembic environment: runs on the connection handed over by :func:`atdata_appview.db.migrate`.

The AppView migrates itself at startup, so there is no alembic.ini; the caller passes the
open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from atdata_appview.db.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached from the alembic CLI
    raise RuntimeError("run migrations through atdata_appview.db.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
