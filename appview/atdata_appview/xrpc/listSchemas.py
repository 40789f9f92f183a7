"""io.atdata.listSchemas: indexed schemas, newest first, by name and/or author."""

from __future__ import annotations

from ..db import queries
from ._base import forwarding

NSID = "io.atdata.listSchemas"

handle = forwarding(queries.list_schemas, "name", "author")
