"""Resolving records without a network: what is refused before any request is made."""

from __future__ import annotations

import pytest
from atdata.atmosphere import fetch_record, load_dataset, record_cid
from atdata.atmosphere.cid import check_record_cid
from atdata.errors import ResolutionError
from hypothesis import given, settings
from hypothesis import strategies as st

# Nothing listens on port 9: a request made anyway would fail with another message.
NOWHERE = "http://127.0.0.1:9"
URI = "at://did:plc:abcdefghijklmnopqrstuvwx/io.atdata.dataset/3kabc"


@pytest.mark.parametrize(
    "cid",
    [
        "bafyNOTACID",
        "bafyreinotacid",
        "",
        "Qmb2oAHkJ1Rc4Wq3rEHtqC5RNGMVJzBgT8wyXJcKaZtjQP",  # CIDv0: never a record's
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",  # raw codec: a blob's
        record_cid({"a": 1})[:-1],
        record_cid({"a": 1}).upper(),
    ],
)
def test_a_malformed_cid_is_said_to_be_malformed_before_any_network_call(
    cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATDATA_PLC_URL", NOWHERE)
    with pytest.raises(ResolutionError, match="malformed cid"):
        load_dataset(URI, cid=cid, appview=NOWHERE)
    with pytest.raises(ResolutionError, match="malformed cid"):
        fetch_record(URI, cid)


def test_a_record_cid_passes_the_check() -> None:
    cid = record_cid({"$type": "io.atdata.dataset", "name": "x"})
    assert cid.startswith("bafyrei") and check_record_cid(cid) == cid


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=70), st.from_regex(r"b[a-z2-7]{0,70}", fullmatch=True)))
def test_the_cid_check_accepts_only_record_cids_and_raises_nothing_else(text: str) -> None:
    try:
        check_record_cid(text)
    except ResolutionError:
        return
    assert len(text) == 59 and text.startswith("bafyrei")
