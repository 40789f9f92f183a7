"""atdata.versions: semantic versions, the newest of a name, the next patch, @handle/name@v."""

from __future__ import annotations

import pytest
import semver
from atdata import AtdataError
from atdata.versions import (
    InvalidVersion,
    newest,
    newest_key,
    next_patch,
    parse_version,
    record_version,
    split_version_ref,
)
from hypothesis import given, settings
from hypothesis import strategies as st

versions = st.builds(
    lambda a, b, c: f"{a}.{b}.{c}",
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
)


def test_parse_refuses_what_is_not_semver_with_an_atdata_error() -> None:
    assert str(parse_version("1.2.3-rc.1+build")) == "1.2.3-rc.1+build"
    for bad in ("v1.0.0", "1.0", "", "1.0.0.0", "latest"):
        with pytest.raises(InvalidVersion, match="not a semantic version") as info:
            parse_version(bad)
        assert isinstance(info.value, AtdataError)


def test_newest_is_the_highest_version_then_the_newest_created_at() -> None:
    rows = [
        ("1.10.0", "2026-01-01"),
        ("1.9.0", "2026-05-01"),  # later, but lower
        ("1.10.0", "2026-02-01"),  # same version, later: wins the tie
        ("2.0.0-rc.1", "2026-06-01"),  # a pre-release of 2.0.0 is above 1.10.0
        (None, "2026-07-01"),  # no version: 0.0.0
        ("garbage", "2026-08-01"),  # malformed: 0.0.0
    ]
    assert newest(rows, lambda r: r) == ("2.0.0-rc.1", "2026-06-01")
    assert newest(rows[:3], lambda r: r) == ("1.10.0", "2026-02-01")
    assert newest([], lambda r: r) is None
    assert record_version({}) == "0.0.0" and record_version({"version": "1.0.0"}) == "1.0.0"


def test_next_patch() -> None:
    assert next_patch([]) == "1.0.0"  # a new name
    assert next_patch(["0.0.0"]) == "1.0.0"  # records from before versions
    assert next_patch(["1.0.0", "2.3.4", "1.9.9"]) == "2.3.5"
    assert next_patch(["0.2.0"]) == "0.2.1"
    assert next_patch(["1.2.0-rc.1"]) == "1.2.0"  # the release the candidate was for


@settings(max_examples=200, deadline=None)
@given(st.lists(versions, min_size=1, max_size=8))
def test_next_patch_is_above_every_used_version(used: list[str]) -> None:
    nxt = parse_version(next_patch(used))
    assert all(nxt > semver.Version.parse(u) for u in used)
    top = max(newest_key(u, "")[0] for u in used)
    assert (nxt.major, nxt.minor) == ((top.major, top.minor) if str(top) != "0.0.0" else (1, 0))


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True),
    st.one_of(st.none(), versions),
)
def test_split_version_ref_round_trips(handle: str, name: str, version: str | None) -> None:
    ref = f"@{handle}/{name}" + (f"@{version}" if version else "")
    assert split_version_ref(ref) == (f"@{handle}/{name}", version)
