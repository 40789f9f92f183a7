"""Test-suite wiring: each fixture module below is owned by one area of the project."""

import os

# No test may ask the public PLC directory (plc.directory) about a DID: CI machines may be
# online, and an answer from the internet is no test of ours. Code that resolves a DID with no
# PLC URL configured gets a loopback port where nothing listens (a fast, clear failure); the
# devnet fixture points ATDATA_PLC_URL at its own directory while it runs.
os.environ.setdefault("ATDATA_PLC_URL", "http://127.0.0.1:9")

pytest_plugins = [
    "_fixtures.services",  # devnet (PLC + 2 PDS), PostgreSQL, S3-compatible server
    "_fixtures.peer",  # the atdata 0.7 peer in its own Python 3.12 venv
    "_fixtures.peer_network",  # the 0.7 SDK publishing and reading on the devnet
    "_fixtures.ingest",  # AppView ingest: frame capture, fake firehose, record builders
    "_fixtures.appview_index",  # AppView index: Store on SQLite + PostgreSQL, served app
    "_fixtures.newcomer",  # AppView via `atdata appview serve` on the devnet + a published dataset
]

# A test that uses one of these fixtures (directly or through another fixture) needs the
# service behind it and gets its marker, so `make check` (-m "not devnet and ...") leaves it out.
SERVICE_MARKERS = {
    "devnet": "devnet",
    "postgres_cluster": "postgres",
    "peer_python": "peer",
    "ray_cluster": "ray",
}


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(marker)
