"""The data commands of the `atdata` CLI, run as subprocesses against real services: the
devnet (PLC + two PDSes) and an AppView (`atdata appview serve`) following it.

Covers: help with examples everywhere; exit codes 0/1/2/3; one-line errors and `--debug`
tracebacks; credentials from the environment and never printed; inspect, schema show|publish,
publish, search, get and load doing their jobs end to end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import atdata
import pytest
from _fixtures.newcomer import Glyph, Published, RunningAppView, glyphs, subprocess_env
from _fixtures.services import login
from atdata.devnet import Account
from hypothesis import given
from hypothesis import strategies as st

GLYPH = "_fixtures.newcomer:Glyph"


def atdata_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 120, input: str = "") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The CLI in a subprocess; `input` is its stdin (empty: a question gets end-of-file)."""
    return subprocess.run(
        [sys.executable, "-m", "atdata.cli", *args],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        cwd=cwd,
        timeout=timeout,
        input=input,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error is the last stderr line, alone (earlier lines may be progress notes)."""
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], done.stderr
    assert "Traceback" not in done.stderr
    return lines[-1]


def creds(account: Account) -> dict[str, str]:
    return subprocess_env(
        ATDATA_PDS=account.pds_url,
        ATDATA_HANDLE=account.handle,
        ATDATA_PASSWORD=account.password,
    )


@pytest.fixture
def shards(tmp_path: Path) -> tuple[list[Glyph], list[atdata.ShardInfo]]:
    samples = glyphs(25, seed=11)
    return samples, atdata.write_samples(samples, str(tmp_path / "g-%06d.tar"), maxcount=10)


# -- help and exit codes ----------------------------------------------------------------------

COMMANDS = [
    ["inspect"],
    ["schema", "show"],
    ["schema", "publish"],
    ["publish"],
    ["search"],
    ["get"],
    ["load"],
    ["delete"],
    ["schema"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    done = atdata_cli(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout
    assert f"atdata {' '.join(command)}" in done.stdout


def test_usage_errors_exit_2() -> None:
    assert atdata_cli("inspect").returncode == 2  # missing argument
    assert atdata_cli("search", "--bogus").returncode == 2
    assert atdata_cli("load", "at://x/io.atdata.dataset/y", "--head", "-1").returncode == 2


def test_help_never_shows_credentials_from_the_environment() -> None:
    env = subprocess_env(ATDATA_PASSWORD="hunter2-do-not-show", ATDATA_HANDLE="secret.handle")
    for command in (["publish"], ["schema", "publish"]):
        done = atdata_cli(*command, "--help", env=env)
        assert done.returncode == 0
        assert "hunter2-do-not-show" not in done.stdout + done.stderr
        assert "ATDATA_PASSWORD" in done.stdout  # where it comes from is documented


# -- inspect ----------------------------------------------------------------------------------


def test_inspect_counts_fields_and_previews(shards: Any, tmp_path: Path) -> None:
    samples, infos = shards
    done = atdata_cli("inspect", str(tmp_path / "g-{000000..000002}.tar"), "--head", "2")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    total = sum(i.bytes for i in infos)
    assert text.splitlines()[0] == f"3 shard(s), 25 samples, {total / 1000:.1f} KB ({total} bytes)"
    # numpy's name next to the wire dtype, as the web page words it
    assert "image    ndarray  |u1 (uint8)  (8, 8)" in text
    assert "caption  str" in text
    assert "caption: 'glyph 1'" in text and "caption: 'glyph 2'" not in text

    as_json = atdata_cli("inspect", str(tmp_path / "*.tar"), "--type", GLYPH, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["samples"] == 25 and report["bytes"] == total
    assert [s["samples"] for s in report["shards"]] == [10, 10, 5]
    fields = {f["field"]: f for f in report["fields"]}
    assert fields["image"]["dtype"] == "|u1" and fields["image"]["shape"] == [8, 8]
    assert fields["label"]["type"] == "int"
    assert report["preview"][0]["fields"]["label"] == repr(samples[0].label)


def test_inspect_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = atdata_cli("inspect", str(tmp_path / "nope.tar"))
    assert missing.returncode == 1
    assert "nope.tar" in one_line_error(missing)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar file at all" * 40)
    bad = atdata_cli("inspect", str(broken))
    assert bad.returncode == 1
    assert "broken.tar" in one_line_error(bad)
    for args in (["--debug", "inspect", str(broken)], ["inspect", str(broken), "--debug"]):
        debug = atdata_cli(*args)  # --debug before or after the subcommand
        assert debug.returncode == 1, debug.stderr
        assert "Traceback" in debug.stderr and "broken.tar" in debug.stderr
    from_env = atdata_cli("inspect", str(broken), env=subprocess_env(ATDATA_DEBUG="1"))
    assert from_env.returncode == 1 and "Traceback" in from_env.stderr
    wrong_type = atdata_cli("inspect", str(broken), "--type", "_fixtures.newcomer:glyphs")
    assert wrong_type.returncode == 1
    assert "not a @atdata.packable" in one_line_error(wrong_type)


# -- schema -----------------------------------------------------------------------------------


@pytest.mark.devnet
def test_schema_show_from_class_and_from_the_network(published: Published) -> None:
    local = atdata_cli("schema", "show", GLYPH)
    assert local.returncode == 0, local.stderr
    assert local.stdout.startswith("newcomer.Glyph 1.0.0")
    assert "image    NDArray  |u1 (uint8)" in local.stdout

    remote = atdata_cli("schema", "show", published.schema_uri, "--json")
    assert remote.returncode == 0, remote.stderr
    body = json.loads(remote.stdout)
    assert body["uri"] == published.schema_uri
    assert [f["name"] for f in body["record"]["fields"]] == ["image", "label", "caption"]

    via_dataset = atdata_cli("schema", "show", published.uri)
    assert via_dataset.returncode == 0, via_dataset.stderr
    assert published.schema_uri in via_dataset.stdout

    did = published.uri.split("/")[2]
    gone = atdata_cli("schema", "show", f"at://{did}/io.atdata.schema/3zzzzzzzzzzzz")
    assert gone.returncode == 3, gone.stderr
    assert "not found" in gone.stderr


@pytest.mark.devnet
def test_schema_publish_prints_the_uri_and_is_idempotent(make_account: Any) -> None:
    bob = make_account(1)
    first = atdata_cli("schema", "publish", GLYPH, env=creds(bob))
    assert first.returncode == 0, first.stderr
    uri = first.stdout.strip()
    assert uri.startswith(f"at://{bob.did}/io.atdata.schema/") and "\n" not in uri
    again = atdata_cli("schema", "publish", GLYPH, env=creds(bob))
    assert again.stdout.strip() == uri
    assert bob.password not in first.stdout + first.stderr + again.stdout + again.stderr


@pytest.mark.devnet
def test_bad_credentials_fail_in_one_line_without_the_password(make_account: Any) -> None:
    bob = make_account(0)
    env = creds(bob)
    env["ATDATA_PASSWORD"] = "wrong-pw-7f3a9"
    done = atdata_cli("schema", "publish", GLYPH, env=env)
    assert done.returncode == 1
    line = one_line_error(done)
    assert "login" in line and bob.handle in line
    assert "wrong-pw-7f3a9" not in done.stdout + done.stderr
    no_password = creds(bob)
    del no_password["ATDATA_PASSWORD"]
    missing = atdata_cli("schema", "publish", GLYPH, env=no_password)
    assert missing.returncode == 1 and "ATDATA_PASSWORD" in one_line_error(missing)


# -- publish, search, get, load ---------------------------------------------------------------


def wait_search(appview: RunningAppView, tag: str, timeout: float = 30) -> dict:
    """A script's way to wait for indexing: `atdata search` exits 3 until something matches."""
    deadline = time.monotonic() + timeout
    while True:
        done = atdata_cli("search", "--tag", tag, "--json", "--appview", appview.url)
        if done.returncode == 0:
            return json.loads(done.stdout)
        assert done.returncode == 3, done.stderr
        assert time.monotonic() < deadline, f"tag {tag} not searchable within {timeout} s"
        time.sleep(0.5)


@pytest.mark.devnet
def test_publish_then_search_get_and_load(
    make_account: Any, appview: RunningAppView, shards: Any, tmp_path: Path
) -> None:
    samples, infos = shards
    alice = make_account(0)
    tag = f"cli{time.monotonic_ns() % 10**8}"
    done = atdata_cli(
        "publish", str(tmp_path / "g-*.tar"),
        "--name", "cli-glyphs", "--schema", GLYPH,
        "--description", "Glyphs published by the CLI test",
        "--tag", f"glyphs,{tag}", "--license", "CC0-1.0",
        "--split", "train=0-1", "--split", "test=2",
        env=creds(alice),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    uri = done.stdout.strip()
    assert uri.startswith(f"at://{alice.did}/io.atdata.dataset/")
    assert alice.password not in done.stdout + done.stderr

    found = wait_search(appview, tag)
    assert [d["uri"] for d in found["datasets"]] == [uri]
    assert found["datasets"][0]["samples"] == 25
    text = atdata_cli("search", "glyphs published", "--tag", tag, "--appview", appview.url)
    assert text.returncode == 0 and uri in text.stdout and "cli-glyphs" in text.stdout

    got = atdata_cli("get", uri)
    assert got.returncode == 0, got.stderr
    assert "25 samples" in got.stdout and "split test: shards [2]" in got.stdout
    for info in infos:
        assert info.sha256 in got.stdout
    record = json.loads(atdata_cli("get", uri, "--json").stdout)
    assert record["value"]["name"] == "cli-glyphs" and record["value"]["license"] == "CC0-1.0"
    schema = atdata_cli("get", record["value"]["schema"]["uri"])
    assert schema.returncode == 0, schema.stderr
    assert "image    NDArray  |u1 (uint8)" in schema.stdout  # the web page's dtype wording

    loaded = atdata_cli("load", uri, "--split", "test", "--head", "3", "--type", GLYPH)
    assert loaded.returncode == 0, loaded.stderr
    lines = loaded.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(f"caption='glyph {20 + i}'" in line for i, line in enumerate(lines))
    assert f"record cid {record['cid']}" in loaded.stderr

    head = json.loads(atdata_cli("load", uri, "--head", "25", "--json").stdout)
    assert head["samples"] == 25 and head["cid"] == record["cid"]
    assert [h["label"] for h in head["head"]] == [str(s.label) for s in samples]

    pinned = atdata_cli(
        "load", uri, "--cid", "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )
    assert pinned.returncode == 1
    assert "changed" in one_line_error(pinned)


@pytest.mark.devnet
def test_publish_refuses_bad_input_before_uploading(make_account: Any, shards: Any,
                                                    tmp_path: Path) -> None:  # fmt: skip

    alice = make_account(0)
    pattern = str(tmp_path / "g-*.tar")
    out_of_range = atdata_cli("publish", pattern, "--name", "x", "--schema", GLYPH,
                              "--split", "train=0-5", env=creds(alice))  # fmt: skip
    assert out_of_range.returncode == 1
    assert "out of range" in one_line_error(out_of_range)
    too_long = atdata_cli("publish", pattern, "--name", "x" * 700, "--schema", GLYPH,
                          env=creds(alice))  # fmt: skip
    assert too_long.returncode == 1
    assert "name" in one_line_error(too_long)
    client = login(alice)
    assert client.list_records("io.atdata.dataset") == []
    blobs = client.atproto.com.atproto.sync.list_blobs({"did": alice.did})
    assert list(blobs.cids) == []


@pytest.mark.devnet
def test_publish_no_cut_over_the_blob_limit_names_the_cli_flag(
    make_account: Any, small_blob_pds: Any, tmp_path: Path
) -> None:
    """The advice is the command line's own (`--no-cut`), not the Python keyword."""
    bob = make_account(pds=small_blob_pds)
    (big,) = atdata.write_samples(glyphs(6000), str(tmp_path / "big-%06d.tar"), maxsize=1 << 40)
    assert big.bytes > 5 * 1024 * 1024
    done = atdata_cli("publish", big.path, "--name", "big", "--schema", GLYPH, "--no-cut",
                      env=creds(bob))  # fmt: skip
    assert done.returncode == 1
    line = one_line_error(done)
    assert "--no-cut" in line and "nothing was uploaded" in line, line
    assert "cut_oversize" not in line


@pytest.mark.devnet
def test_publish_interrupted_says_what_was_published(make_account: Any, tmp_path: Path) -> None:
    """Ctrl-C during a publish: exit 130 and one line that agrees with the PDS."""

    alice = make_account(0)
    atdata.write_samples(glyphs(24000, seed=5), str(tmp_path / "i-%06d.tar"), maxcount=6000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "atdata.cli", "publish", str(tmp_path / "i-*.tar"),
         "--name", "interrupted", "--schema", GLYPH],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=creds(alice),
    )  # fmt: skip
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("publishing 4 shard(s)"), first
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()  # not communicate(): readline() may have buffered more
    stdout = proc.stdout.read() if proc.stdout is not None else ""
    assert proc.wait(60) == 130, rest
    lines = rest.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), rest
    client = login(alice)
    datasets = [r.uri for r in client.list_records("io.atdata.dataset")]
    if "was not published" in lines[0]:
        assert datasets == [] and stdout == ""
    else:
        assert f"was published: {datasets[0]}" in lines[0] and stdout.strip() == datasets[0]


@pytest.mark.devnet
def test_get_and_load_absent_records_exit_3(published: Published) -> None:
    did = published.uri.split("/")[2]
    missing = f"at://{did}/io.atdata.dataset/3zzzzzzzzzzzz"
    for command in (["get", missing], ["load", missing]):
        done = atdata_cli(*command)
        assert done.returncode == 3, done.stderr
        assert "not found" in done.stderr
    lens = atdata_cli("get", published.lens_uri)
    assert lens.returncode == 0
    assert "_fixtures.newcomer:glyph_label" in lens.stdout


@pytest.mark.devnet
def test_handle_uris_resolve_through_the_appview_and_unknown_ones_exit_3(
    appview: RunningAppView, published: Published
) -> None:
    did, handle = published.account.did, published.account.handle
    dataset, schema = (u.replace(did, handle) for u in (published.uri, published.schema_uri))
    with_appview = subprocess_env(ATDATA_APPVIEW=appview.url)
    with_appview.pop("ATDATA_PDS", None)
    got = atdata_cli("get", dataset, env=with_appview)
    assert got.returncode == 0, got.stderr
    assert published.uri in got.stdout
    loaded = atdata_cli("load", dataset, "--head", "1", env=with_appview)
    assert loaded.returncode == 0 and "caption='glyph 0'" in loaded.stdout, loaded.stderr
    shown = atdata_cli("schema", "show", schema, env=with_appview)
    assert shown.returncode == 0 and "newcomer.Glyph" in shown.stdout, shown.stderr
    lens = atdata_cli("get", published.lens_uri.replace(did, handle), env=with_appview)
    assert lens.returncode == 0, lens.stderr

    nobody = f"at://nobody{time.monotonic_ns() % 10**6}.pds1.test/io.atdata.dataset/3zzzzzzzzzzzz"
    unknown = atdata_cli("get", nobody, env=with_appview)
    assert unknown.returncode == 3 and "not found" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr

    without = subprocess_env()
    without.pop("ATDATA_APPVIEW", None)
    without.pop("ATDATA_PDS", None)
    for command in (["get", dataset], ["load", dataset], ["schema", "show", schema]):
        done = atdata_cli(*command, env=without)
        assert done.returncode == 3, done.stderr
        assert "not found" in done.stderr and "--appview" in done.stderr, done.stderr
    via_option = atdata_cli("get", dataset, "--appview", appview.url, env=without)
    assert via_option.returncode == 0, via_option.stderr


@pytest.mark.devnet
def test_load_with_a_mismatching_type_fails_naming_the_field(
    published: Published, tmp_path: Path
) -> None:
    (tmp_path / "wrong.py").write_text(
        "import numpy as np\nfrom numpy.typing import NDArray\nimport atdata\n\n\n"
        '@atdata.packable(name="newcomer.Glyph", version="1.0.0")\n'
        "class Glyph:\n    image: NDArray[np.uint8]\n    label: str\n    caption: str\n"
    )
    done = atdata_cli("load", published.uri, "--type", "wrong.py:Glyph", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "label" in one_line_error(done)
    assert done.stdout == ""


@pytest.mark.devnet
def test_delete_own_records_asks_refuses_others_and_guards_used_schemas(
    make_account: Any, appview: RunningAppView, shards: Any, tmp_path: Path
) -> None:
    alice, bob = make_account(0), make_account(1)
    pattern = str(tmp_path / "g-*.tar")
    tag = f"del{time.monotonic_ns() % 10**8}"

    def publish(account: Account, name: str, schema: str) -> str:
        done = atdata_cli("publish", pattern, "--name", name, "--schema", schema, "--tag", tag,
                          env=creds(account))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    v1, v2 = publish(alice, "del-glyphs", GLYPH), publish(alice, "del-glyphs", GLYPH)
    keep = publish(alice, "kept", GLYPH)
    schema = json.loads(atdata_cli("get", keep, "--json").stdout)["value"]["schema"]["uri"]
    theirs = publish(bob, "bobs-glyphs", schema)  # another author uses alice's schema
    wait_search(appview, tag)
    client = login(alice)

    def datasets() -> set[str]:
        return {r.uri for r in client.list_records("io.atdata.dataset")}

    others = atdata_cli("delete", theirs, "--yes", env=creds(alice))
    assert others.returncode == 1 and "your own records" in one_line_error(others)
    used = atdata_cli("delete", schema, v1, "--yes", env=creds(alice))
    assert used.returncode == 1 and "--force" in one_line_error(used)
    declined = atdata_cli("delete", v1, env=creds(alice), input="n\n")
    assert declined.returncode == 1 and "nothing deleted" in one_line_error(declined)
    no_answer = atdata_cli("delete", v1, env=creds(alice))
    assert no_answer.returncode == 1 and "--yes" in one_line_error(no_answer)
    missing = atdata_cli(
        "delete", v1.rsplit("/", 1)[0] + "/3zzzzzzzzzzzz", "--yes", env=creds(alice)
    )
    assert missing.returncode == 3 and "not found" in missing.stderr
    assert datasets() == {v1, v2, keep}

    versions = atdata_cli("delete", "--all-versions", "del-glyphs", env=creds(alice), input="y\n")
    assert versions.returncode == 0, versions.stderr
    assert set(versions.stdout.split()) == {v1, v2}
    assert datasets() == {keep}
    none_left = atdata_cli("delete", "--all-versions", "del-glyphs", "--yes", env=creds(alice))
    assert none_left.returncode == 3
    assert client.delete_versions("kept") == [keep] and datasets() == set()

    forced = atdata_cli("delete", schema, "--yes", "--force", "--appview", appview.url,
                        env=creds(alice))  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == schema
    assert "1 dataset(s) of other authors" in forced.stderr
    assert alice.password not in forced.stdout + forced.stderr

    deadline = time.monotonic() + 30  # the AppView drops what was deleted
    while [d["uri"] for d in wait_search(appview, tag)["datasets"]] != [theirs]:
        assert time.monotonic() < deadline, "deleted datasets still searchable after 30 s"
        time.sleep(0.5)


@pytest.mark.devnet
def test_search_exit_codes(appview: RunningAppView, published: Published) -> None:
    nothing = atdata_cli("search", "zzqx-nothing-here", "--appview", appview.url)
    assert nothing.returncode == 3 and nothing.stdout == ""
    env = subprocess_env()
    env.pop("ATDATA_APPVIEW", None)
    no_appview = atdata_cli("search", "glyphs", env=env)
    assert no_appview.returncode == 1
    assert "ATDATA_APPVIEW" in one_line_error(no_appview)
    down = atdata_cli("search", "glyphs", "--appview", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert "unreachable" in one_line_error(down)
    via_env = atdata_cli(
        "search", "--tag", published.tag, env=subprocess_env(ATDATA_APPVIEW=appview.url)
    )
    assert via_env.returncode == 0 and published.uri in via_env.stdout


@pytest.mark.devnet
def test_publish_to_s3_then_inspect_and_load(
    make_account: Any, shards: Any, tmp_path: Path, s3_server: Any, s3_bucket: str
) -> None:
    """`--storage s3://...` with the user's AWS settings from the environment (a real
    S3-compatible server on loopback); the same settings read the shards back."""
    samples, _ = shards
    alice = make_account(0)
    env = creds(alice)
    env.update(
        AWS_ENDPOINT_URL=s3_server.endpoint_url,
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION=s3_server.region,
    )
    done = atdata_cli("publish", str(tmp_path / "g-*.tar"), "--name", "s3-glyphs",
                      "--schema", GLYPH, "--storage", f"s3://{s3_bucket}/glyphs", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    uri = done.stdout.strip()
    keys = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    assert keys == [f"glyphs/g-{i:06d}.tar" for i in range(3)]
    assert s3_server.secret_key not in done.stdout + done.stderr

    inspected = atdata_cli("inspect", f"s3://{s3_bucket}/glyphs", "--json", env=env)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["samples"] == 25

    record = json.loads(atdata_cli("get", uri, "--json", env=env).stdout)["value"]
    assert record["storage"]["bucket"] == s3_bucket
    loaded = atdata_cli("load", uri, "--head", "25", "--json", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert [h["caption"] for h in json.loads(loaded.stdout)["head"]] == [
        repr(s.caption) for s in samples
    ]


@given(st.sets(st.integers(0, 60), min_size=1), st.sampled_from(["train", "test", "val-2"]))
def test_split_option_parses_any_index_set(indices: set[int], name: str) -> None:
    """`--split name=...` written as runs of ranges and single indices parses back exactly."""
    from atdata.cli.publish import parse_split

    ordered = sorted(indices)
    runs: list[list[int]] = []
    for i in ordered:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    spec = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    assert parse_split(f"{name}={spec}", 61) == (name, ordered)


@pytest.mark.parametrize("bad", ["train", "=1", "train=", "train=a", "train=3-1", "train=99"])
def test_split_option_refuses_malformed_input(bad: str) -> None:
    from atdata.cli import CliError
    from atdata.cli.publish import parse_split

    with pytest.raises(CliError):
        parse_split(bad, 10)
