"""Test-suite wiring: each fixture module below is owned by one area of the project."""

pytest_plugins = [
    "_fixtures.services",  # devnet (PLC + 2 PDS), PostgreSQL, S3-compatible server
    "_fixtures.peer",  # the atdata 0.7 peer in its own Python 3.12 venv
    "_fixtures.ingest",  # AppView ingest: frame capture, fake firehose, record builders
    "_fixtures.appview_index",  # AppView index: Store on SQLite + PostgreSQL, served app
    "_fixtures.newcomer",  # AppView via `atdata appview serve` on the devnet + a published dataset
]
