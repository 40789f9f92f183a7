"""io.atdata.listLenses: lenses by source and/or target schema."""

from __future__ import annotations

from ..db import queries
from ._base import forwarding

NSID = "io.atdata.listLenses"

handle = forwarding(queries.list_lenses, "source", "target")
