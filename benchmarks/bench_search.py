"""p50/p99 latency of io.atdata.searchDatasets over synthetic indexes (SQLite and PostgreSQL).

The corpus: N datasets whose names, descriptions and tags are drawn from an ML-dataset
vocabulary with Zipf-distributed word frequencies (a few words are everywhere, most are rare),
plus licenses, sample counts, authors and schemas. It is bulk-loaded with the same column
extraction and full-text composition the Store uses, then queried through the real query
layer (`search_datasets`) on a pooled connection, one query at a time, single client.

Query mix (seeded): 40% 1-3 word text queries, 40% the same with a tag filter, 20% empty-query
tag browsing (newest first). Latency includes hydration of the page (25 items, with each
dataset's version count) and facets.

Versions: every ``--versions-every``-th dataset (default 4) is a second version (1.0.1) of the
one before it (same author and name), so a quarter of the rows are older versions that the
default search collapses away. The mix runs twice on each index: collapsed (one result per
author and name, the default) and with ``allVersions`` (every record), the baseline.

    .venv/bin/python benchmarks/bench_search.py --quick               # 20k datasets, SQLite + PostgreSQL
    .venv/bin/python benchmarks/bench_search.py                       # 100k and 1M
    .venv/bin/python benchmarks/bench_search.py --sizes 1000000 --backends sqlite --db-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from atdata_appview.db import SearchParams, Store, search_datasets
from atdata_appview.db.extract import DATASET, at_uri, dataset_row
from atdata_appview.db.models import dataset_records, dataset_tags, datasets, repos, schemas
from atdata_appview.db.search import fts_tags_text
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]

DOMAIN = [
    "medical",
    "chest",
    "xray",
    "brain",
    "mri",
    "retina",
    "skin",
    "lesion",
    "pathology",
    "histology",
    "ct",
    "scan",
    "ultrasound",
    "satellite",
    "aerial",
    "landsat",
    "sentinel",
    "crop",
    "forest",
    "wildfire",
    "flood",
    "urban",
    "building",
    "road",
    "traffic",
    "vehicle",
    "pedestrian",
    "street",
    "driving",
    "lidar",
    "radar",
    "camera",
    "drone",
    "agriculture",
    "weather",
    "climate",
    "ocean",
    "wave",
    "speech",
    "audio",
    "music",
    "song",
    "speaker",
    "voice",
    "accent",
    "podcast",
    "birdsong",
    "noise",
    "transcript",
    "phoneme",
    "text",
    "news",
    "review",
    "tweet",
    "wikipedia",
    "book",
    "legal",
    "contract",
    "patent",
    "email",
    "chat",
    "dialogue",
    "question",
    "answer",
    "code",
    "python",
    "github",
    "commit",
    "function",
    "bug",
    "sentiment",
    "toxicity",
    "translation",
    "summarization",
    "protein",
    "genome",
    "dna",
    "rna",
    "cell",
    "molecule",
    "chemistry",
    "drug",
    "compound",
    "reaction",
    "crystal",
    "material",
    "finance",
    "stock",
    "price",
    "trade",
    "fraud",
    "credit",
    "loan",
    "insurance",
    "retail",
    "sales",
    "customer",
    "product",
    "chess",
    "game",
    "robot",
    "grasp",
    "manipulation",
    "navigation",
    "simulation",
    "physics",
    "fluid",
    "particle",
    "galaxy",
    "star",
    "telescope",
    "spectrum",
    "astronomy",
    "earthquake",
    "seismic",
    "energy",
    "solar",
    "wind",
    "battery",
    "sensor",
]
ML = [
    "images",
    "labels",
    "annotations",
    "bounding",
    "boxes",
    "segmentation",
    "masks",
    "keypoints",
    "captions",
    "frames",
    "video",
    "clips",
    "recordings",
    "samples",
    "pairs",
    "triples",
    "sequences",
    "tokens",
    "embeddings",
    "features",
    "vectors",
    "graphs",
    "nodes",
    "edges",
    "tables",
    "rows",
    "columns",
    "time",
    "series",
    "events",
    "logs",
    "trajectories",
    "episodes",
    "classification",
    "detection",
    "regression",
    "generation",
    "retrieval",
    "ranking",
    "clustering",
    "forecasting",
    "benchmark",
    "training",
    "validation",
    "test",
    "split",
    "balanced",
    "noisy",
    "synthetic",
    "real",
    "curated",
    "filtered",
    "multilingual",
    "english",
    "french",
    "german",
    "spanish",
    "chinese",
    "japanese",
    "hindi",
    "arabic",
    "small",
    "large",
    "tiny",
    "huge",
    "highres",
    "lowres",
    "grayscale",
    "rgb",
    "multispectral",
    "hyperspectral",
    "thermal",
    "depth",
    "stereo",
    "panoramic",
    "aligned",
    "paired",
    "unpaired",
    "weak",
    "supervised",
    "unsupervised",
    "selfsupervised",
]
FILLER = [
    "dataset",
    "collected",
    "from",
    "public",
    "sources",
    "with",
    "manual",
    "quality",
    "checks",
    "each",
    "sample",
    "contains",
    "field",
    "values",
    "stored",
    "shards",
    "webdataset",
    "format",
    "license",
    "terms",
    "apply",
    "please",
    "cite",
    "paper",
    "version",
    "release",
    "update",
    "includes",
    "fixes",
    "removed",
    "duplicates",
    "added",
    "metadata",
    "for",
    "research",
    "only",
    "contact",
    "maintainers",
    "via",
    "repository",
    "issues",
    "splits",
    "provided",
    "reproducible",
    "seeds",
    "documentation",
]
TAGS = [
    "vision",
    "audio",
    "text",
    "nlp",
    "tabular",
    "timeseries",
    "graph",
    "multimodal",
    "medical",
    "remote-sensing",
    "robotics",
    "reinforcement-learning",
    "speech",
    "music",
    "biology",
    "chemistry",
    "physics",
    "finance",
    "autonomous-driving",
    "code",
    "benchmark",
    "synthetic",
    "small",
    "large",
    "multilingual",
    "classification",
    "detection",
    "segmentation",
    "generation",
    "retrieval",
    "question-answering",
    "translation",
    "sentiment",
    "3d",
    "video",
    "point-cloud",
    "ocr",
    "document",
    "faces",
    "pose",
    "tracking",
]
LICENSES = ["CC-BY-4.0", "MIT", "Apache-2.0", "CC0-1.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0",
            "ODC-By-1.0", "other"]  # fmt: skip
VOCAB = DOMAIN + ML + FILLER


def zipf_weights(n: int, s: float = 1.07) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


class Corpus:
    """Deterministic generator of dataset records and of the query mix."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        vocab = list(dict.fromkeys(VOCAB))
        self.rng.shuffle(vocab)
        self.vocab = vocab
        self.vocab_w = zipf_weights(len(vocab))
        self.name_words = [w for w in vocab if w in DOMAIN or w in ML]
        self.name_w = zipf_weights(len(self.name_words), 0.9)
        self.tags = list(TAGS)
        self.rng.shuffle(self.tags)
        self.tag_w = zipf_weights(len(self.tags), 1.0)
        self.lic_w = zipf_weights(len(LICENSES), 1.3)

    def record(self, i: int, n_authors: int, n_schemas: int) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        did = f"did:plc:author{i % n_authors:05d}"
        name = " ".join(rng.choices(self.name_words, self.name_w, k=rng.randint(2, 4)))
        desc = " ".join(rng.choices(self.vocab, self.vocab_w, k=rng.randint(12, 40)))
        tags = sorted(set(rng.choices(self.tags, self.tag_w, k=rng.randint(1, 4))))
        samples = int(10 ** rng.uniform(1, 7))
        schema = f"at://did:plc:author{i % n_authors:05d}/io.atdata.schema/s{i % n_schemas}"
        day = i * 86400 * 3 // 1000  # spread over ~8 years for 1M, monotone in i
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1_500_000_000 + day))
        rec = {
            "$type": DATASET,
            "name": name,
            "description": desc,
            "schema": {"uri": schema, "cid": "bafyschema"},
            "storage": {"$type": "io.atdata.dataset#httpStorage"},
            "shards": [
                {
                    "url": f"https://data.example/{i}/{k:06d}.tar",
                    "samples": samples,
                    "bytes": samples * 100,
                    "sha256": "0" * 64,
                }
                for k in range(1)
            ],
            "totals": {"samples": samples, "bytes": samples * 100, "shards": 1},
            "tags": tags,
            "license": rng.choices(LICENSES, self.lic_w)[0],
            "createdAt": created,
        }
        return did, rec

    def queries(self, n: int) -> list[tuple[str, SearchParams]]:
        rng = random.Random(99)
        out = []
        for _ in range(n):
            roll = rng.random()
            tag = rng.choices(self.tags, self.tag_w)[0]
            if roll < 0.2:
                out.append(("browse-tag", SearchParams(tags=[tag])))
                continue
            words = rng.choices(self.vocab, self.vocab_w, k=rng.randint(1, 3))
            q = " ".join(words)
            if roll < 0.6:
                out.append(("text", SearchParams(q=q)))
            else:
                out.append(("text+tag", SearchParams(q=q, tags=[tag])))
        return out


def bulk_load(
    store: Store, corpus: Corpus, n: int, batch: int = 20_000, versions_every: int = 4
) -> float:
    """Insert n datasets with executemany (rows built by the Store's own extraction); every
    ``versions_every``-th is a newer version of the one before (which stops being newest)."""
    pg = store.dialect == "postgresql"
    n_authors = max(10, n // 50)
    n_schemas = 20
    started = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(
            repos.insert(),
            [
                {"did": f"did:plc:author{a:05d}", "handle": f"author{a}.test", "status": "active"}
                for a in range(n_authors)
            ],
        )
        conn.execute(
            schemas.insert(),
            [
                {
                    "uri": f"at://did:plc:author{a:05d}/io.atdata.schema/s{s}",
                    "did": f"did:plc:author{a:05d}",
                    "rkey": f"s{s}",
                    "cid": "bafyschema",
                    "name": f"Schema{s}",
                    "version": "1.0.0",
                    "field_names": ["image", "label", f"feature{s}"],
                    "record": {},
                    "hidden": False,
                }
                for a in range(min(n_authors, 50))
                for s in range(n_schemas)
                if s % 50 == a % 50 or a < 1
            ],
        )
    fts_sqlite = text(
        "INSERT INTO datasets_fts (rowid, name, description, tags, fields)"
        " VALUES (:id, :name, :description, :tags, 'image label')"
    )
    search_index = None
    if pg:  # bulk-load order: rows first, the GIN index (as the migration made it) at the end
        with store.engine.begin() as conn:
            search_index = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_datasets_search'")
            ).scalar_one()
            conn.execute(text("DROP INDEX ix_datasets_search"))
    for start in range(0, n, batch):
        ds_rows, rec_rows, tag_rows, fts_rows = [], [], [], []
        for i in range(start, min(n, start + batch)):
            did, rec = corpus.record(i, n_authors, n_schemas)
            rec["version"] = "1.0.0"
            if versions_every and i % versions_every == versions_every - 1 and ds_rows:
                older = ds_rows[-1]  # same author and name, one patch later
                did, rec["name"], rec["version"] = older["did"], older["name"], "1.0.1"
                older["newest"] = False
            row = dataset_row(rec)
            ds_id = i + 1
            ds_rows.append(
                {
                    "id": ds_id,
                    "uri": at_uri(did, DATASET, f"r{i}"),
                    "did": did,
                    "rkey": f"r{i}",
                    "cid": "bafydataset",
                    "name": row.name,
                    "version": row.version,
                    "newest": True,
                    "description": row.description,
                    "tags": row.tags,
                    "license": row.license,
                    "samples": row.samples,
                    "bytes": row.bytes,
                    "schema_uri": row.schema_uri,
                    "schema_cid": row.schema_cid,
                    "created_at": row.created_at,
                    "indexed_at": row.created_at,
                    "hidden": False,
                }
            )
            rec_rows.append({"dataset_id": ds_id, "record": rec})
            tag_rows += [
                {
                    "dataset_id": ds_id,
                    "tag": t,
                    "hidden": False,
                    "created_at": row.created_at,
                    "samples": row.samples,
                }
                for t in row.tags
            ]
            fts_rows.append(
                {
                    "id": ds_id,
                    "name": row.name,
                    "description": row.description,
                    "tags": fts_tags_text(row.tags),
                }
            )
        with store.engine.begin() as conn:
            if pg:
                _pg_copy(conn, ds_rows, rec_rows, tag_rows, fts_rows)
            else:
                conn.execute(datasets.insert(), ds_rows)
                conn.execute(dataset_records.insert(), rec_rows)
                conn.execute(dataset_tags.insert(), tag_rows)
                conn.execute(fts_sqlite, fts_rows)
        print(f"  loaded {min(n, start + batch):>9,} / {n:,}", end="\r", file=sys.stderr)
    with store.engine.begin() as conn:
        if pg:
            conn.execute(text(search_index))
            conn.execute(text("SELECT setval('datasets_id_seq', (SELECT max(id) FROM datasets))"))
        else:
            conn.execute(text("INSERT INTO datasets_fts(datasets_fts) VALUES ('optimize')"))
            conn.execute(text("ANALYZE"))
    if pg:  # the steady state autovacuum would reach: visibility map set, statistics fresh
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ac:
            ac.execute(text("VACUUM ANALYZE"))
    print(file=sys.stderr)
    return time.perf_counter() - started


_DS_COLS = ("id", "uri", "did", "rkey", "cid", "name", "version", "newest", "description", "tags",
            "license", "samples", "bytes", "schema_uri", "schema_cid", "created_at", "indexed_at",
            "hidden")  # fmt: skip
_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage (LIKE datasets INCLUDING DEFAULTS);"
    " ALTER TABLE stage ADD COLUMN IF NOT EXISTS tags_text text;"
    " ALTER TABLE stage ADD COLUMN IF NOT EXISTS fields_text text"
)
# Same composition as the Store's PostgreSQL full-text update (weights A name, B tags, C fields).
_PG_MOVE = (
    f"INSERT INTO datasets ({', '.join(_DS_COLS)}, search) SELECT {', '.join(_DS_COLS)},"
    " setweight(to_tsvector('english', coalesce(name, '')), 'A')"
    " || setweight(to_tsvector('english', tags_text), 'B')"
    " || setweight(to_tsvector('english', fields_text), 'C')"
    " || setweight(to_tsvector('english', coalesce(description, '')), 'D') FROM stage;"
    " TRUNCATE stage"
)


def _pg_copy(conn: Any, ds_rows: list, rec_rows: list, tag_rows: list, fts_rows: list) -> None:
    """COPY a batch through a staging table (the full-text column is computed on the move
    into datasets), then COPY its records and tags."""
    import json

    conn.execute(text(_PG_STAGE))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cols = ", ".join([*_DS_COLS, "tags_text", "fields_text"])
        with cur.copy(f"COPY stage ({cols}) FROM STDIN") as cp:
            for row, fts in zip(ds_rows, fts_rows, strict=True):
                values = [json.dumps(row[c]) if c == "tags" else row[c] for c in _DS_COLS]
                cp.write_row([*values, fts["tags"], "image label"])
        cur.execute(_PG_MOVE)
        with cur.copy("COPY dataset_records (dataset_id, record) FROM STDIN") as cp:
            for r in rec_rows:
                cp.write_row([r["dataset_id"], json.dumps(r["record"])])
        with cur.copy(
            "COPY dataset_tags (dataset_id, tag, hidden, created_at, samples) FROM STDIN"
        ) as cp:
            for r in tag_rows:
                cp.write_row(
                    [r["dataset_id"], r["tag"], r["hidden"], r["created_at"], r["samples"]]
                )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure(
    store: Store, mixes: dict[str, list[tuple[str, SearchParams]]], warmup: int = 30
) -> dict[str, dict]:
    """Latencies per mode and query kind; the modes' queries alternate (query i of every
    mode, then query i + 1), so no mode runs on caches the other warmed."""
    by_mode: dict[str, dict[str, list[float]]] = {mode: {} for mode in mixes}
    with store.engine.connect() as conn:
        for mix in mixes.values():
            for _, params in mix[:warmup]:
                search_datasets(conn, params)
        for i in range(max(len(mix) for mix in mixes.values())):
            for mode, mix in mixes.items():
                kind, params = mix[i]
                t0 = time.perf_counter()
                page = search_datasets(conn, params)
                dt = (time.perf_counter() - t0) * 1000
                by_mode[mode].setdefault(kind, []).append(dt)
                by_mode[mode].setdefault("all", []).append(dt)
                del page
    return {
        mode: {
            k: (statistics.median(v), percentile(v, 99), max(v), len(v)) for k, v in by_kind.items()
        }
        for mode, by_kind in by_mode.items()
    }


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[Any]:
    """A database URL factory: the given server, or a throwaway cluster for this run."""
    if url:
        yield lambda name: url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from _fixtures.services import fresh_database, running_postgres

    with running_postgres() as cluster:

        @contextlib.contextmanager
        def fresh(name: str) -> Iterator[str]:
            with fresh_database(cluster) as db:
                yield db

        yield fresh


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="one small size (20,000) for a smoke run")
    ap.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument(
        "--versions-every",
        type=int,
        default=4,
        help="every Nth dataset is a newer version of the one before (0: no versions)",
    )
    ap.add_argument("--db-dir", help="keep SQLite files here and reuse them when present")
    ap.add_argument(
        "--pg-url", help="use this (empty) PostgreSQL database instead of a throwaway cluster"
    )
    args = ap.parse_args()
    sizes = [20_000] if args.quick else args.sizes
    corpus_queries = Corpus().queries(args.queries)
    every_version = [(k, replace(p, all_versions=True)) for k, p in corpus_queries]
    print(f"query mix: {args.queries} queries (+30 warm-up), limit 25, facets on, one client")
    results = []
    pg_ctx = postgres(args.pg_url) if "postgres" in args.backends else contextlib.nullcontext()
    with pg_ctx as pg_db:
        for size in sizes:
            for backend in args.backends:
                with contextlib.ExitStack() as stack:
                    if backend == "sqlite":
                        folder = (
                            Path(args.db_dir)
                            if args.db_dir
                            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
                        )
                        folder.mkdir(parents=True, exist_ok=True)
                        path = folder / f"bench-{size}.sqlite"
                        reuse = path.exists() and args.db_dir
                        url = f"sqlite:///{path}"
                    else:
                        db = pg_db(f"bench{size}")
                        url = stack.enter_context(db) if hasattr(db, "__enter__") else db
                        reuse = False
                    store = Store(url)
                    stack.callback(store.close)
                    if backend == "postgres" and args.pg_url:
                        with store.engine.connect() as conn:
                            held = conn.execute(text("SELECT count(*) FROM datasets")).scalar()
                        if held not in (0, size):
                            raise SystemExit(
                                f"{args.pg_url} holds {held} datasets, not 0 or {size}"
                            )
                        reuse, path = held == size, args.pg_url
                    if reuse:
                        load_s = 0.0
                        print(f"{backend} {size:,}: reusing {path}")
                    else:
                        load_s = bulk_load(
                            store, Corpus(), size, versions_every=args.versions_every
                        )
                        print(f"{backend} {size:,}: loaded in {load_s:.0f} s")
                    modes = measure(
                        store, {"collapsed": corpus_queries, "allVersions": every_version}
                    )
                    for mode, stats in modes.items():
                        print(f"  {mode}:")
                        for kind, (p50, p99, mx, n) in sorted(stats.items()):
                            results.append((backend, size, mode, kind, p50, p99, mx, n))
                            print(
                                f"  {kind:<11} n={n:<4} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
                                f"   max {mx:7.1f} ms"
                            )
    print(
        "\nbackend   datasets   versions     kind         p50 ms   p99 ms"
        "  (target p99 < 50 ms at 1M, collapsed)"
    )
    for backend, size, mode, kind, p50, p99, _mx, _n in results:
        print(f"{backend:<9} {size:>9,}  {mode:<12} {kind:<11} {p50:7.2f}  {p99:7.2f}")


if __name__ == "__main__":
    main()
