"""Frame decoding (libipld) on real devnet frames, and codec properties of CAR/MST."""

from __future__ import annotations

import contextlib

import libipld
import pytest
from _fixtures.ingest import frame_parts
from atdata_appview.frames import (
    AccountEvent,
    CarError,
    CarReader,
    CommitEvent,
    FrameError,
    IdentityEvent,
    SkippedCommit,
    decode_frame,
    encode_car,
    make_cid,
    parse_car,
)
from atdata_appview.mst import build_mst, mst_lookup, mst_walk, proof_blocks
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.devnet
def test_real_frames_decode_like_the_sdk(real_frames):
    from atproto import parse_subscribe_repos_message
    from atproto_subscription.frames import Frame

    kinds: dict[type, int] = {}
    for data in real_frames.frames:
        event = decode_frame(data)
        kinds[type(event)] = kinds.get(type(event), 0) + 1
        sdk = parse_subscribe_repos_message(Frame.from_bytes(data))
        assert event.seq == sdk.seq
        if isinstance(event, CommitEvent | SkippedCommit):
            assert (event.repo, event.rev, event.since) == (sdk.repo, sdk.rev, sdk.since)
    # a new account emits #identity and #account; our writes emit commits of both kinds
    assert kinds.get(IdentityEvent) and kinds.get(AccountEvent)
    assert kinds.get(CommitEvent, 0) >= 4 and kinds.get(SkippedCommit)


@pytest.mark.devnet
def test_commit_filter_keeps_only_our_collections(real_frames):
    post = real_frames.commit("create", "com.example.post/3kpost00000aa")
    event = decode_frame(post)
    assert isinstance(event, SkippedCommit) and event.repo == real_frames.did

    created = decode_frame(real_frames.commit("create", "io.atdata.dataset/3kbeta00000aa"))
    assert isinstance(created, CommitEvent)
    [op] = created.ops
    assert (op.action, op.collection, op.rkey) == ("create", "io.atdata.dataset", "3kbeta00000aa")
    car = parse_car(created.blocks)
    assert car.roots == [created.commit]
    record = car.get(op.cid)  # the block hashes to the op's CID
    assert record["name"] == "beta"

    deleted = decode_frame(real_frames.commit("delete", "io.atdata.dataset/3kalpha0000aa"))
    assert deleted.ops[0].cid is None and deleted.ops[0].prev is not None


@pytest.mark.devnet
def test_same_frame_with_other_prefix_is_skipped(real_frames):
    data = real_frames.commit("create", "io.atdata.dataset/3kbeta00000aa")
    assert isinstance(decode_frame(data, prefix="io.other."), SkippedCommit)


def test_error_frame_and_unknown_type():
    err = libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor(
        {"error": "FutureCursor", "message": "Cursor in the future."}
    )
    event = decode_frame(err)
    assert event.error == "FutureCursor"
    unknown = libipld.encode_dag_cbor({"op": 1, "t": "#labels"}) + libipld.encode_dag_cbor(
        {"seq": 5}
    )
    assert decode_frame(unknown).seq == 5


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        libipld.encode_dag_cbor({"op": 1, "t": "#commit"}),  # header only
        libipld.encode_dag_cbor({"op": 1, "t": "#commit"}) + libipld.encode_dag_cbor({"seq": "x"}),
        libipld.encode_dag_cbor({"op": 7}) + libipld.encode_dag_cbor({}),
        libipld.encode_dag_cbor({"op": 1, "t": "#commit"})
        + libipld.encode_dag_cbor(
            {
                "seq": 1,
                "repo": "did:plc:x",
                "rev": "r",
                "ops": [{"action": "create", "path": "io.atdata.dataset"}],
            }
        ),
    ],
)
def test_garbage_raises_frame_error(data):
    with pytest.raises(FrameError):
        decode_frame(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_frame_error(data):
    with contextlib.suppress(FrameError):
        decode_frame(data)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["op", "t"]), st.sampled_from([1, -1, "#commit", "#account", "#sync"])
    ),
    st.dictionaries(
        st.sampled_from(
            ["seq", "repo", "rev", "ops", "did", "active", "commit", "blocks", "since"]
        ),
        cbor_values,
    ),
)
def test_structured_garbage_never_escapes_as_another_error(header, body):
    data = libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)
    with contextlib.suppress(FrameError):
        decode_frame(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=10, unique=True))
def test_car_round_trip_and_tamper_detection(payloads):
    blocks = {make_cid(p): p for p in payloads}
    root = next(iter(blocks))
    car = parse_car(encode_car([root], blocks))
    assert car.roots == [root]
    assert {c: car.raw(c) for c in blocks} == blocks
    cid = next(iter(blocks))
    bad = parse_car(encode_car([root], {**blocks, cid: blocks[cid] + b"x"}))
    with pytest.raises(CarError):
        bad.raw(cid)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=8, unique=True),
    st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=50),
)
def test_car_reader_fed_in_any_chunks_equals_parse_car(payloads, sizes, cut):
    blocks = {make_cid(libipld.encode_dag_cbor({"p": p})): libipld.encode_dag_cbor({"p": p})
              for p in payloads}  # fmt: skip
    data = encode_car([next(iter(blocks))], blocks)
    reader, pos, i = CarReader(), 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        reader.feed(data[pos : pos + size])
        pos, i = pos + size, i + 1
    car = reader.finish()
    assert (car.roots, car.blocks) == (parse_car(data).roots, parse_car(data).blocks)
    # a stream that stops inside a block (the last one holds a 36-byte CID and more) is an
    # error at `finish`, never a shorter CAR
    short = CarReader()
    short.feed(data[: len(data) - 1 - cut % 30])
    with pytest.raises(CarError):
        short.finish()


@settings(max_examples=40, deadline=None)
@given(
    st.sets(st.from_regex(r"[a-z]{1,3}\.[a-z]{1,4}/[a-z0-9]{1,8}", fullmatch=True), max_size=120),
    st.from_regex(r"[a-z]{1,3}\.[a-z]{1,4}/[a-z0-9]{1,8}", fullmatch=True),
)
def test_mst_lookup_and_proofs(keys, probe):
    items = {k.encode(): make_cid(k.encode()) for k in keys}
    root, blocks = build_mst(items)

    def get(cid):
        return libipld.decode_dag_cbor(blocks[cid])

    assert mst_walk(get, root) == sorted(items.items())
    for key, value in items.items():
        proof = proof_blocks(blocks, root, key)
        assert mst_lookup(lambda c, p=proof: libipld.decode_dag_cbor(p[c]), root, key) == value
    proof = proof_blocks(blocks, root, probe.encode())
    found = mst_lookup(lambda c: libipld.decode_dag_cbor(proof[c]), root, probe.encode())
    assert found == items.get(probe.encode())


def test_frame_parts_helper_matches_decoder(tmp_path):
    header = {"op": 1, "t": "#identity"}
    body = {"seq": 3, "did": "did:plc:abc", "time": "2026-01-01T00:00:00Z", "handle": "a.test"}
    data = libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)
    assert frame_parts(data) == (header, body)
    event = decode_frame(data)
    assert isinstance(event, IdentityEvent) and event.handle == "a.test"
