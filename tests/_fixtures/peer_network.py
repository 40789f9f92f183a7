"""The atdata 0.7 SDK on the devnet: it publishes to a PDS and reads records back, in its own
Python 3.12 venv (its import name is also ``atdata``), through scripts run by `run_peer`.

Three workarounds the 0.7 SDK needs on a bare devnet, all in the scripts below, none in the
code under test:

- its ``Atmosphere.login`` fetches a Bluesky profile that a bare PDS does not serve, and its
  ``Atmosphere(_client=...)`` leaves its session empty: we log in with the ``atproto`` client
  (``fetch_bsky_profile=False``), pass it as ``_client`` and fill ``_session`` from the
  client's own session (DID and handle);
- it finds a DID's PDS (for ``getBlob``) on the public ``plc.directory``: we resolve the DID on
  the devnet's PLC and put the endpoint into its per-process cache (``_pds_endpoint_cache``);
- it reads another account's records through ``bsky.social``: readers use an unauthenticated
  ``Atmosphere(base_url=<the author's PDS>)``, which reads from that PDS directly.

Samples are made by one generator (`PEER_SAMPLES`), run in both interpreters, so a test
compares what it reads here with what the peer wrote, value for value.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from atdata.devnet import Account, DevnetInfo

from .peer import run_peer

#: The samples both sides build: run in the peer and here (``exec``).
PEER_SAMPLES = r"""
import numpy as np

def make(i):
    return dict(
        image=((np.arange(12) + 7 * i) % 251).astype(np.uint8).reshape(3, 4),
        label=f"glyph-{i}",
        score=i / 4,
    )
"""

#: The 0.7 SDK's sample type for `PEER_SAMPLES` (NDArray, str, float: the shim and two scalars).
PEER_CLASS = r"""
import atdata
from numpy.typing import NDArray

@atdata.packable
class PeerGlyph:
    image: NDArray
    label: str
    score: float
"""

#: Log in to a devnet PDS (the first workaround in the module docstring).
PEER_LOGIN = r"""
from atproto import Client as _AtpClient
from atdata.atmosphere import Atmosphere

def login(pds_url, handle, password):
    client = _AtpClient(base_url=pds_url)
    client.login(handle, password, fetch_bsky_profile=False)
    atmo = Atmosphere(base_url=pds_url, _client=client)
    atmo._session = {"did": client._session.did, "handle": client._session.handle}
    return atmo
"""

#: Point the 0.7 SDK's PDS lookup at the devnet's PLC for one DID (the second workaround).
PEER_PLC = r"""
import json as _json
import urllib.request as _request
import atdata.atmosphere as _am

def use_devnet_plc(plc_url, did):
    with _request.urlopen(f"{plc_url}/{did}") as r:
        doc = _json.load(r)
    _am._pds_endpoint_cache[did] = next(
        s["serviceEndpoint"] for s in doc["service"] if s["type"] == "AtprotoPersonalDataServer"
    )
"""

_PUBLISH = (
    PEER_SAMPLES
    + PEER_CLASS
    + PEER_LOGIN
    + r"""
import io, json, sys
import webdataset as wds
from atdata.atmosphere import DatasetPublisher, LabelPublisher, SchemaPublisher

args = json.loads(sys.argv[1])
atmo = login(args["pds_url"], args["handle"], args["password"])

def shard(indices):
    buf = io.BytesIO()
    with wds.writer.TarWriter(buf) as sink:
        for i in indices:
            sink.write({**PeerGlyph(**make(i)).as_wds, "__key__": f"sample_{i:06d}"})
    return buf.getvalue()

n, per = args["samples"], args["per_shard"]
shards = [shard(range(lo, min(lo + per, n))) for lo in range(0, n, per)]
schema = SchemaPublisher(atmo).publish(
    PeerGlyph, name=args["schema_name"], version="1.0.0", description="Glyphs of the 0.7 SDK."
)
entry = DatasetPublisher(atmo).publish_with_blobs(
    shards, str(schema), name=args["name"], description=args["description"],
    tags=args["tags"], license="CC0-1.0",
)
label = LabelPublisher(atmo).publish(args["name"], str(entry), version=args["version"])
print(json.dumps({"schema": str(schema), "entry": str(entry), "label": str(label), "did": atmo.did}))
"""
)


@dataclass(frozen=True)
class PeerPublished:
    """What the 0.7 SDK published: a schema, a blob-stored entry and a label of it."""

    account: Account
    name: str
    version: str
    schema_name: str
    tag: str
    samples: int
    per_shard: int
    schema_uri: str
    entry_uri: str
    label_uri: str

    @property
    def did(self) -> str:
        return self.account.did


def peer_publish(
    peer_python: str,
    account: Account,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    samples: int = 10,
    per_shard: int = 4,
) -> PeerPublished:
    """Publish `PEER_SAMPLES` 0..samples-1 as `account` with the 0.7 SDK (createRecord on its
    PDS, blob storage with sha256 checksums) plus a label `name`@`version`; returns the URIs."""
    name = name or f"peer-glyphs-{secrets.token_hex(3)}"
    tag = f"peertag{secrets.token_hex(3)}"
    schema_name = f"PeerGlyph{secrets.token_hex(2)}"
    args = {
        "pds_url": account.pds_url,
        "handle": account.handle,
        "password": account.password,
        "name": name,
        "version": version,
        "schema_name": schema_name,
        "description": f"Glyphs written by the atdata 0.7 SDK ({tag}).",
        "tags": ["glyphs", tag],
        "samples": samples,
        "per_shard": per_shard,
    }
    out = run_peer(peer_python, _PUBLISH, json.dumps(args))
    assert out["did"] == account.did
    return PeerPublished(
        account=account,
        name=name,
        version=version,
        schema_name=schema_name,
        tag=tag,
        samples=samples,
        per_shard=per_shard,
        schema_uri=out["schema"],
        entry_uri=out["entry"],
        label_uri=out["label"],
    )


_READ = (
    PEER_PLC
    + r"""
import json, sys
import numpy as np
from atdata.atmosphere import Atmosphere, DatasetLoader, SchemaLoader
from atdata._schema_codec import _schema_to_type

args = json.loads(sys.argv[1])
did = args["uri"].split("/")[2]
use_devnet_plc(args["plc_url"], did)
atmo = Atmosphere(base_url=args["pds_url"])  # unauthenticated: reads this PDS directly
loader = DatasetLoader(atmo)
entry = loader.get(args["uri"])
schema = SchemaLoader(atmo).get(entry["schemaRef"])
T = _schema_to_type(schema)

def plain(v):
    if isinstance(v, np.ndarray):
        return {"dtype": v.dtype.str, "shape": list(v.shape), "data": v.tolist()}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    return v

rows = [
    {f: plain(getattr(s, f)) for f in schema["schema"]["properties"]}
    for s in loader.to_dataset(args["uri"], T).ordered()
]
print(json.dumps({"schema": schema, "entry": entry, "rows": rows}))
"""
)


def peer_read(peer_python: str, devnet: DevnetInfo, pds_url: str, entry_uri: str) -> Any:
    """Read the entry `entry_uri` (on the PDS at `pds_url`) with the 0.7 SDK: its schema
    record, its entry record and every sample in order, values as plain JSON
    (arrays as ``{"dtype", "shape", "data"}``, bytes as hex)."""
    args = {"plc_url": devnet.plc_url, "pds_url": pds_url, "uri": entry_uri}
    return run_peer(peer_python, _READ, json.dumps(args))


def plain(value: Any) -> Any:
    """A value as `peer_read` describes it."""
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


def make_samples() -> Callable[[int], dict[str, Any]]:
    """`make(i)` of `PEER_SAMPLES`, here."""
    scope: dict[str, Any] = {}
    exec(PEER_SAMPLES, scope)
    return scope["make"]


@pytest.fixture(scope="session")
def peer_published(peer_python: str, make_account: Callable[..., Account]) -> PeerPublished:
    """A dataset the 0.7 SDK published from a new account on PDS1: 10 samples in 3 blob
    shards, its schema and a label (its name, version 1.0.0)."""
    return peer_publish(peer_python, make_account(0))
