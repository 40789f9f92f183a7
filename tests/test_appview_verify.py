"""Verification of real devnet commits and repos; forged variants must be refused."""

from __future__ import annotations

import asyncio

import httpx
import libipld
import pytest
from _fixtures.ingest import frame_parts, rebuild_commit
from atdata_appview.frames import decode_frame, make_cid
from atdata_appview.identity import IdentityResolver, VerifyKey, parse_did_document
from atdata_appview.verify import SignatureError, VerifyError, verify_commit, verify_repo
from atproto_crypto.consts import P256_JWT_ALG, SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

BETA = "io.atdata.dataset/3kbeta00000aa"
ALPHA = "io.atdata.dataset/3kalpha0000aa"


def run_verify(frame: bytes, plc_url: str):
    async def go():
        resolver = IdentityResolver(plc_url)
        try:
            result = await verify_commit(decode_frame(frame), resolver.resolve)
            return result, resolver.resolutions
        except Exception as exc:
            exc.resolutions = resolver.resolutions  # type: ignore[attr-defined]
            raise
        finally:
            await resolver.close()

    return asyncio.run(go())


@pytest.mark.devnet
def test_real_create_update_delete_verify(real_frames):
    created, _ = run_verify(real_frames.commit("create", BETA), real_frames.plc_url)
    [op] = created.ops
    assert (op.action, op.rkey, op.record["name"]) == ("create", "3kbeta00000aa", "beta")
    assert op.record["schema"]["cid"].startswith("bafy")  # links come out in JSON form
    updated, _ = run_verify(real_frames.commit("update", ALPHA), real_frames.plc_url)
    assert updated.ops[0].record["name"] == "alpha-v2"
    deleted, _ = run_verify(real_frames.commit("delete", ALPHA), real_frames.plc_url)
    assert deleted.ops[0].action == "delete" and deleted.ops[0].record is None  # absence proved


@pytest.mark.devnet
def test_forged_signature_is_refused_after_one_fresh_lookup(real_frames):
    def flip(commit):
        sig = bytearray(commit["sig"])
        sig[10] ^= 0x01
        commit["sig"] = bytes(sig)

    forged = rebuild_commit(real_frames.commit("create", BETA), mutate_commit=flip)
    with pytest.raises(SignatureError) as info:
        run_verify(forged, real_frames.plc_url)
    assert info.value.resolutions == 2  # cached lookup, then one refresh, then refusal


@pytest.mark.devnet
def test_commit_signed_by_another_key_is_refused(real_frames):
    other = ec.generate_private_key(ec.SECP256K1())

    def resign(commit):  # same content, a foreign signature
        unsigned = {k: v for k, v in commit.items() if k != "sig"}
        r, s = decode_dss_signature(
            other.sign(libipld.encode_dag_cbor(unsigned), ec.ECDSA(SHA256()))
        )
        n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
        s = min(s, n - s)
        commit["sig"] = r.to_bytes(32, "big") + s.to_bytes(32, "big")

    forged = rebuild_commit(real_frames.commit("create", BETA), mutate_commit=resign)
    with pytest.raises(SignatureError):
        run_verify(forged, real_frames.plc_url)


@pytest.mark.devnet
def test_record_block_not_matching_its_cid_is_refused(real_frames):
    frame = real_frames.commit("create", BETA)
    op_cid = frame_parts(frame)[1]["ops"][0]["cid"]

    def swap(blocks, _root):
        record = libipld.decode_dag_cbor(blocks[op_cid])
        record["name"] = "tampered"
        blocks[op_cid] = libipld.encode_dag_cbor(record)  # same CID key, other bytes

    with pytest.raises(VerifyError, match="does not match its CID"):
        run_verify(rebuild_commit(frame, mutate_blocks=swap), real_frames.plc_url)


@pytest.mark.devnet
def test_op_cid_not_in_mst_is_refused(real_frames):
    frame = real_frames.commit("create", BETA)
    data = libipld.encode_dag_cbor({"$type": "io.atdata.dataset", "name": "smuggled"})
    cid = make_cid(data)

    def add(blocks, _root):
        blocks[cid] = data

    def point(body):
        body["ops"][0]["cid"] = cid

    forged = rebuild_commit(frame, mutate_blocks=add, mutate_body=point)
    with pytest.raises(VerifyError, match="MST holds"):
        run_verify(forged, real_frames.plc_url)


@pytest.mark.devnet
def test_path_not_in_mst_is_refused(real_frames):
    def move(body):
        body["ops"][0]["path"] = "io.atdata.dataset/3kzzzz00000aa"

    forged = rebuild_commit(real_frames.commit("create", BETA), mutate_body=move)
    with pytest.raises(VerifyError, match="not in the commit's MST"):
        run_verify(forged, real_frames.plc_url)


@pytest.mark.devnet
def test_delete_of_a_present_record_is_refused(real_frames):
    def as_delete(body):
        body["ops"][0].update(action="delete", cid=None)

    forged = rebuild_commit(real_frames.commit("create", BETA), mutate_body=as_delete)
    with pytest.raises(VerifyError, match="still in the MST"):
        run_verify(forged, real_frames.plc_url)


@pytest.mark.devnet
def test_missing_proof_node_is_refused(real_frames):
    frame = real_frames.commit("create", BETA)
    _, body = frame_parts(frame)
    op_cid = body["ops"][0]["cid"]

    def drop_mst(blocks, root):
        for cid in list(blocks):
            if cid not in (root, op_cid):
                del blocks[cid]

    with pytest.raises(VerifyError, match="not in the proof"):
        run_verify(rebuild_commit(frame, mutate_blocks=drop_mst), real_frames.plc_url)


@pytest.mark.devnet
def test_commit_for_another_did_is_refused(real_frames):
    def other_repo(body):
        body["repo"] = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"

    forged = rebuild_commit(real_frames.commit("create", BETA), mutate_body=other_repo)
    with pytest.raises(VerifyError, match="not 'did:plc:a"):
        run_verify(forged, real_frames.plc_url)


@pytest.mark.devnet
def test_whole_repo_verifies_and_lists_our_records(real_frames):
    car = httpx.get(
        f"{real_frames.pds_url}/xrpc/com.atproto.sync.getRepo", params={"did": real_frames.did}
    ).content
    doc = httpx.get(f"{real_frames.plc_url}/{real_frames.did}").json()
    ident = parse_did_document(real_frames.did, doc)
    assert ident.pds == real_frames.pds_url.rstrip("/")
    repo = verify_repo(real_frames.did, car, ident.key)
    assert {(r.collection, r.rkey, r.record["name"]) for r in repo.records} >= {
        ("io.atdata.dataset", "3kbeta00000aa", "beta")
    }
    assert all(r.collection.startswith("io.atdata.") for r in repo.records)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = other.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    with pytest.raises(SignatureError):
        verify_repo(real_frames.did, car, VerifyKey(format_did_key(P256_JWT_ALG, raw)))


@pytest.mark.parametrize("alg", [SECP256K1_JWT_ALG, P256_JWT_ALG])
def test_verify_key_accepts_low_s_only(alg):
    curve = ec.SECP256K1() if alg == SECP256K1_JWT_ALG else ec.SECP256R1()
    order = {
        SECP256K1_JWT_ALG: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
        P256_JWT_ALG: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    }[alg]
    priv = ec.generate_private_key(curve)
    pub = priv.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key = VerifyKey(format_did_key(alg, pub))
    data = b"commit bytes"
    r, s = decode_dss_signature(priv.sign(data, ec.ECDSA(SHA256())))
    low, high = min(s, order - s), max(s, order - s)
    sig = r.to_bytes(32, "big") + low.to_bytes(32, "big")
    assert key.verify(data, sig)
    assert not key.verify(data + b"!", sig)
    assert not key.verify(data, r.to_bytes(32, "big") + high.to_bytes(32, "big"))  # malleated
    assert not key.verify(data, sig[:63])
    key._k1 = None  # without coincurve: the OpenSSL path must agree
    assert key.verify(data, sig)
    assert not key.verify(data + b"!", sig)
    assert not key.verify(data, r.to_bytes(32, "big") + high.to_bytes(32, "big"))
