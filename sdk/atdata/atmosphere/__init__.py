"""atdata on the AT Protocol: publish schemas, datasets and lenses; resolve at:// URIs.

Publishing needs the `atmosphere` extra (`atproto`); resolving needs `httpx` and `libipld`.
"""

from __future__ import annotations

from ..records import DatasetRef, Record, RecordRef
from .cache import CachedShard, ShardCache, default_cache_dir
from .cards import read_card
from .cid import record_cid
from .client import Client
from .identity import AtUri, IdentityResolver, default_plc_url, parse_at_uri
from .lens_code import import_lens, lens_code_ref
from .lineage import RELATIONS
from .netguard import check_url, guarded_client, private_network_allowed
from .resolve import GuardedHttpShard, Resolver, fetch_record, load_dataset, shard_sources
from .shards import PublishError, cut_shard

__all__ = [
    "AtUri",
    "CachedShard",
    "Client",
    "DatasetRef",
    "GuardedHttpShard",
    "IdentityResolver",
    "PublishError",
    "RELATIONS",
    "Record",
    "RecordRef",
    "Resolver",
    "ShardCache",
    "check_url",
    "cut_shard",
    "default_cache_dir",
    "default_plc_url",
    "fetch_record",
    "guarded_client",
    "import_lens",
    "lens_code_ref",
    "load_dataset",
    "parse_at_uri",
    "private_network_allowed",
    "read_card",
    "record_cid",
    "shard_sources",
]
