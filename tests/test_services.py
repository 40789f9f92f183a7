"""The PostgreSQL and S3 fixtures start real servers and clean up after themselves."""

from __future__ import annotations

import subprocess

import pytest
from _fixtures.services import (
    PgCluster,
    S3Server,
    fresh_bucket,
    fresh_database,
    running_moto,
    running_postgres,
)
from atdata.devnet import port_is_free

# -- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_url_and_psql(postgres_url: str, postgres_cluster: PgCluster) -> None:
    import psycopg

    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(postgres_cluster.dsn()) as conn:
        (version,) = conn.execute("show server_version_num").fetchone()
        assert int(version) // 10000 == 15
        (fsync,) = conn.execute("show fsync").fetchone()
        assert fsync == "off"
    out = subprocess.run(
        [str(postgres_cluster.bin_dir / "psql"), postgres_cluster.dsn(), "-tAc", "select 40 + 2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"


@pytest.mark.postgres
def test_pg_database_is_fresh_and_isolated(pg_database: str, postgres_cluster: PgCluster) -> None:
    import psycopg

    name = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(postgres_cluster.dsn(name)) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("create table t (id int primary key, body text)")
        conn.execute("insert into t values (1, 'x')")
        conn.commit()
        # full-text search, which the AppView index uses
        (match,) = conn.execute(
            "select to_tsvector('english', 'handwritten digits') @@ plainto_tsquery('digit')"
        ).fetchone()
        assert match is True
    with psycopg.connect(postgres_cluster.dsn()) as conn:
        assert conn.execute("select to_regclass('public.t')").fetchone() == (None,)


@pytest.mark.postgres
def test_fresh_database_is_dropped_afterwards(postgres_cluster: PgCluster) -> None:
    import psycopg

    def exists(name: str) -> bool:
        with psycopg.connect(postgres_cluster.dsn(), autocommit=True) as conn:
            query = "select 1 from pg_database where datname = %s"
            return conn.execute(query, (name,)).fetchone() is not None

    with fresh_database(postgres_cluster) as url:
        name = url.rsplit("/", 1)[1]
        # an open connection does not keep it alive (DROP ... WITH (FORCE))
        held = psycopg.connect(postgres_cluster.dsn(name))
        assert exists(name)
    assert not exists(name)
    held.close()


@pytest.mark.postgres
def test_running_postgres_stops_and_cleans_up_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), running_postgres() as cluster:
        assert not port_is_free(cluster.port)
        data = cluster.data_dir
        raise RuntimeError("boom")
    assert port_is_free(cluster.port)
    assert not data.exists()


# -- S3 --------------------------------------------------------------------------------


def test_s3_put_get_range_and_list(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    body = bytes(range(256)) * 40
    client.put_object(Bucket=s3_bucket, Key="shards/a-000000.tar", Body=body)
    client.put_object(Bucket=s3_bucket, Key="shards/a-000001.tar", Body=b"second")

    assert client.get_object(Bucket=s3_bucket, Key="shards/a-000000.tar")["Body"].read() == body
    part = client.get_object(Bucket=s3_bucket, Key="shards/a-000000.tar", Range="bytes=100-355")
    assert part["ContentRange"] == f"bytes 100-355/{len(body)}"
    assert part["Body"].read() == body[100:356]

    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="shards/")
    assert [o["Key"] for o in listed["Contents"]] == ["shards/a-000000.tar", "shards/a-000001.tar"]
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")


def test_s3_buckets_are_fresh_and_deleted_afterwards(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    with fresh_bucket(s3_server) as other:
        assert other != s3_bucket
        client.put_object(Bucket=other, Key="k", Body=b"v")
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert s3_bucket in names and other not in names


def test_s3_multipart_upload(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    part_size = 5 * 1024 * 1024
    data = b"a" * part_size + b"b" * 1000
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key="big")
    parts = []
    for number, start in enumerate(range(0, len(data), part_size), start=1):
        out = client.upload_part(
            Bucket=s3_bucket,
            Key="big",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + part_size],
        )
        parts.append({"PartNumber": number, "ETag": out["ETag"]})
    client.complete_multipart_upload(
        Bucket=s3_bucket, Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert client.head_object(Bucket=s3_bucket, Key="big")["ContentLength"] == len(data)


def test_running_moto_stops_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), running_moto() as server:
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        assert not port_is_free(port)
        raise RuntimeError("boom")
    assert port_is_free(port)
