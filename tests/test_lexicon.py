"""Lexicon loading and validation: spec rules for documents, values, formats and params."""

from __future__ import annotations

import base64
import copy
import json
import string
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from atdata import LexiconError
from atdata.lexicon import (
    Lexicons,
    check_format,
    default_lexicons,
    grapheme_length,
    lexicon_dir,
    load_lexicons,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CIDS = [
    "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
    "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def doc(defs: dict[str, Any], lex_id: str = "com.example.test") -> dict[str, Any]:
    return {"lexicon": 1, "id": lex_id, "defs": defs}


def record_doc(props: dict[str, Any], required=(), nullable=(), lex_id="com.example.test"):
    rec = {"type": "object", "properties": props, "required": list(required)}
    if nullable:
        rec["nullable"] = list(nullable)
    return doc({"main": {"type": "record", "key": "tid", "record": rec}}, lex_id)


def one_field(schema: dict[str, Any]) -> Lexicons:
    return Lexicons([record_doc({"f": schema})])


def bad(lx: Lexicons, value: Any, nsid: str = "com.example.test") -> LexiconError:
    with pytest.raises(LexiconError) as exc:
        lx.validate_record(nsid, value)
    return exc.value


# --- our lexicons -------------------------------------------------------------------------


def test_our_lexicons_load_and_name_their_files() -> None:
    lx = load_lexicons()
    assert {"io.atdata.dataset", "io.atdata.lens", "com.atproto.repo.strongRef"} <= set(lx)
    for path in lexicon_dir().rglob("*.json"):
        d = json.loads(path.read_text())
        assert d["id"] == ".".join(path.relative_to(lexicon_dir()).with_suffix("").parts)


def _strings(node: Any, path: str = ""):
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield path, node
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")


def test_every_string_in_our_lexicons_has_max_length() -> None:
    seen = 0
    for nsid in default_lexicons():  # ours, and ours for the peer network's records
        if nsid.startswith(("io.atdata.", "science.alt.dataset.")):
            for path, s in _strings(default_lexicons().docs[nsid]):
                seen += 1
                assert "maxLength" in s, f"{nsid}{path}"
    assert seen > 10


def test_own_namespace_string_without_max_length_is_refused() -> None:
    d = record_doc({"name": {"type": "string"}}, lex_id="io.atdata.bogus")
    with pytest.raises(LexiconError, match=r"defs\.main\.record\.properties\.name.*maxLength"):
        Lexicons([d])
    Lexicons([record_doc({"name": {"type": "string"}})])  # other namespaces: spec only


def _types(node: Any):
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for v in node.values():
            yield from _types(v)
    elif isinstance(node, list):
        for v in node:
            yield from _types(v)


def test_our_lexicons_contain_no_float_types() -> None:
    types = {t for p in lexicon_dir().rglob("*.json") for t in _types(json.loads(p.read_text()))}
    assert "integer" in types and not types & {"number", "float", "double"}


def test_load_from_dir_checks_path_matches_id(tmp_path: Path) -> None:
    (tmp_path / "com" / "example").mkdir(parents=True)
    (tmp_path / "com" / "example" / "wrong.json").write_text(json.dumps(record_doc({})))
    with pytest.raises(LexiconError, match="does not match its path"):
        load_lexicons(tmp_path)
    (tmp_path / "com" / "example" / "wrong.json").unlink()
    (tmp_path / "com" / "example" / "test.json").write_text("{not json")
    with pytest.raises(LexiconError, match="not readable JSON"):
        load_lexicons(tmp_path)


# --- document rules -----------------------------------------------------------------------

BAD_DOCS = [
    ({"lexicon": 2, "id": "com.example.test", "defs": {"x": {"type": "token"}}}, "lexicon"),
    ({"lexicon": 1, "id": "nodots", "defs": {"x": {"type": "token"}}}, "NSID"),
    ({"lexicon": 1, "id": "com.example.test", "defs": {}}, "defs"),
    ({"lexicon": 1, "id": "com.example.test", "defs": {"x": {"type": "token"}}, "zz": 1}, "zz"),
    (
        doc(
            {
                "other": {
                    "type": "record",
                    "key": "tid",
                    "record": {"type": "object", "properties": {}},
                }
            }
        ),
        "only be `main`",
    ),
    (
        doc(
            {
                "main": {
                    "type": "record",
                    "key": "uuid",
                    "record": {"type": "object", "properties": {}},
                }
            }
        ),
        "key",
    ),
    (
        doc({"main": {"type": "record", "key": "tid", "record": {"type": "string"}}}),
        "must be an object",
    ),
    (doc({"main": {"type": "wat"}}), "unknown type"),
    (doc({"s": {"type": "string", "maxLength": 3, "minLength": 5}}), "minLength is greater"),
    (doc({"s": {"type": "string", "maxLength": -1}}), ">= 0"),
    (doc({"s": {"type": "string", "format": "email"}}), "unknown string format"),
    (doc({"s": {"type": "string", "maxlength": 3}}), "not allowed"),
    (doc({"s": {"type": "integer", "minimum": 5, "maximum": 1}}), "minimum is greater"),
    (doc({"s": {"type": "integer", "maximum": 1.5}}), "must be an integer"),
    (doc({"s": {"type": "integer", "enum": [1, "a"]}}), "integers"),
    (doc({"o": {"type": "object", "properties": {}, "required": ["x"]}}), "required"),
    (doc({"o": {"type": "object", "properties": {}, "nullable": ["x"]}}), "nullable"),
    (doc({"o": {"type": "object"}}), "needs `properties`"),
    (doc({"a": {"type": "array"}}), "needs `items`"),
    (doc({"b": {"type": "blob", "accept": ["not a mime"]}}), "MIME"),
    (doc({"r": {"type": "ref", "ref": "#missing"}}), "unresolved ref"),
    (doc({"r": {"type": "ref", "ref": "com.example.other#x"}}), "unresolved ref"),
    (doc({"u": {"type": "union", "refs": ["#missing"]}}), "unresolved ref"),
    (doc({"u": {"type": "union", "refs": ["bad ref"]}}), "nsid"),
    (
        doc(
            {
                "main": {
                    "type": "query",
                    "parameters": {
                        "type": "params",
                        "properties": {"o": {"type": "object", "properties": {}}},
                    },
                }
            }
        ),
        "params hold only",
    ),
    (
        doc(
            {
                "main": {
                    "type": "query",
                    "parameters": {
                        "type": "params",
                        "properties": {"a": {"type": "array", "items": {"type": "unknown"}}},
                    },
                }
            }
        ),
        "params arrays",
    ),
    (
        doc(
            {"main": {"type": "query", "output": {"schema": {"type": "object", "properties": {}}}}}
        ),
        "encoding",
    ),
    (
        doc(
            {
                "main": {
                    "type": "subscription",
                    "message": {"schema": {"type": "object", "properties": {}}},
                }
            }
        ),
        "union",
    ),
    (
        doc({"o": {"type": "object", "properties": {"t": {"type": "token"}}}}),
        "token is only allowed",
    ),
    (doc({"o": {"type": "object", "properties": {"q": {"type": "query"}}}}), "top-level"),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCS)
def test_bad_documents_are_refused(document: dict, message: str) -> None:
    with pytest.raises(LexiconError, match=message):
        Lexicons([document])


def test_cross_lexicon_ref_and_duplicate_id() -> None:
    a = doc(
        {"thing": {"type": "object", "properties": {"n": {"type": "integer"}}}}, "com.example.a"
    )
    b = record_doc({"t": {"type": "ref", "ref": "com.example.a#thing"}}, lex_id="com.example.b")
    lx = Lexicons([a, b])
    lx.validate_record("com.example.b", {"t": {"n": 1}})
    assert bad(lx, {"t": {"n": "1"}}, "com.example.b").path == "t.n"
    with pytest.raises(LexiconError, match="twice"):
        Lexicons([a, a])


# --- values -------------------------------------------------------------------------------


def test_strings_lengths_graphemes_enum_const_format() -> None:
    lx = one_field({"type": "string", "maxLength": 8, "minLength": 2})
    lx.validate_record("com.example.test", {"f": "abcdefgh"})
    assert "maxLength" in str(bad(lx, {"f": "ééééé"}))  # 10 UTF-8 bytes
    assert "minLength" in str(bad(lx, {"f": "a"}))
    g = one_field({"type": "string", "maxGraphemes": 2})
    g.validate_record(
        "com.example.test", {"f": "e\u0301e\u0301"}
    )  # two graphemes, four code points
    assert "maxGraphemes" in str(bad(g, {"f": "abc"}))
    assert grapheme_length("👍🏽👍🏽") == 2
    e = one_field({"type": "string", "enum": ["a", "b"], "knownValues": ["z"]})
    assert "not one of" in str(bad(e, {"f": "z"}))
    k = one_field({"type": "string", "knownValues": ["z"]})
    k.validate_record("com.example.test", {"f": "anything"})  # knownValues is open
    c = one_field({"type": "string", "const": ""})
    assert "must be" in str(bad(c, {"f": "x"}))  # a falsy const still counts
    f = one_field({"type": "string", "format": "did"})
    assert bad(f, {"f": "not-a-did"}).path == "f"


def test_integers_booleans_and_no_floats() -> None:
    lx = one_field({"type": "integer", "minimum": 0, "maximum": 10, "enum": [0, 5, 10]})
    lx.validate_record("com.example.test", {"f": 0})
    assert "minimum" in str(bad(lx, {"f": -1}))
    assert "maximum" in str(bad(lx, {"f": 11}))
    assert "not one of" in str(bad(lx, {"f": 3}))
    assert "integer" in str(bad(lx, {"f": True}))
    assert "integer" in str(bad(lx, {"f": 5.0}))
    z = one_field({"type": "integer", "const": 0})
    assert "must be 0" in str(bad(z, {"f": 1}))
    b = one_field({"type": "boolean"})
    assert "boolean" in str(bad(b, {"f": 1}))
    # floats refused even in fields the lexicon does not declare
    assert bad(b, {"f": True, "extra": {"x": [1, 2.5]}}).path == "extra.x[1]"


def test_required_nullable_and_type() -> None:
    lx = Lexicons([record_doc({"a": {"type": "integer"}, "b": {"type": "integer"}}, ["a"], ["b"])])
    lx.validate_record("com.example.test", {"a": 1, "b": None})
    lx.validate_record("com.example.test", {"$type": "com.example.test", "a": 1})
    assert bad(lx, {"b": 1}).path == "a"
    assert "not nullable" in str(bad(lx, {"a": None}))
    assert bad(lx, {"$type": "com.example.other", "a": 1}).path == "$type"
    assert "object" in str(bad(lx, [1]))


def test_arrays() -> None:
    lx = one_field({"type": "array", "items": {"type": "integer"}, "minLength": 1, "maxLength": 2})
    lx.validate_record("com.example.test", {"f": [1, 2]})
    assert "maxLength" in str(bad(lx, {"f": [1, 2, 3]}))
    assert "minLength" in str(bad(lx, {"f": []}))
    assert bad(lx, {"f": [1, "x"]}).path == "f[1]"


def blob(mime="application/x-tar", size=10, cid=CIDS[1]) -> dict:
    return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": size}


def test_blobs_bytes_and_cid_links() -> None:
    lx = one_field({"type": "blob", "accept": ["image/*", "application/x-tar"], "maxSize": 100})
    lx.validate_record("com.example.test", {"f": blob()})
    lx.validate_record("com.example.test", {"f": blob("image/png")})
    assert "maxSize" in str(bad(lx, {"f": blob(size=101)}))
    assert bad(lx, {"f": blob("text/csv")}).path == "f.mimeType"
    assert bad(lx, {"f": blob(cid="nope!")}).path == "f.ref.$link"
    assert bad(lx, {"f": {"ref": {"$link": CIDS[0]}}}).path == "f.$type"
    by = one_field({"type": "bytes", "maxLength": 3})
    by.validate_record("com.example.test", {"f": {"$bytes": base64.b64encode(b"abc").decode()}})
    by.validate_record("com.example.test", {"f": b"ab"})
    assert "maxLength" in str(bad(by, {"f": b"abcd"}))
    assert "base64" in str(bad(by, {"f": {"$bytes": "***"}}))
    cl = one_field({"type": "cid-link"})
    cl.validate_record("com.example.test", {"f": {"$link": CIDS[0]}})
    assert bad(cl, {"f": {"$link": "x"}}).path == "f.$link"
    assert "cid-link" in str(bad(cl, {"f": CIDS[0]}))


def test_unions_open_and_closed_and_unknown() -> None:
    defs = {
        "main": {
            "type": "record",
            "key": "any",
            "record": {
                "type": "object",
                "properties": {
                    "open": {"type": "union", "refs": ["#a", "#b"]},
                    "closed": {"type": "union", "refs": ["#a"], "closed": True},
                    "u": {"type": "unknown"},
                },
            },
        },
        "a": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
        "b": {"type": "object", "properties": {"y": {"type": "string"}}},
    }
    lx = Lexicons([doc(defs)])
    ok = {"$type": "com.example.test#a", "x": 1}
    lx.validate_record("com.example.test", {"open": ok, "closed": ok, "u": {"k": "v"}})
    lx.validate_record("com.example.test", {"open": {"$type": "com.other.thing", "z": 1}})
    assert bad(lx, {"open": {"$type": "com.example.test#a"}}).path == "open.x"
    assert bad(lx, {"open": {"x": 1}}).path == "open.$type"
    assert bad(lx, {"closed": {"$type": "com.example.test#b"}}).path == "closed.$type"
    assert bad(lx, {"u": "str"}).path == "u"
    assert bad(lx, {"u": {"f": 0.5}}).path == "u.f"


def test_strong_ref_builtin() -> None:
    lx = Lexicons([record_doc({"s": {"type": "ref", "ref": "com.atproto.repo.strongRef"}}, ["s"])])
    ok = {
        "uri": "at://did:plc:abcdefghijklmnopqrstuvwx/io.atdata.schema/3kabcdefghijk",
        "cid": CIDS[0],
    }
    lx.validate_record("com.example.test", {"s": ok})
    assert bad(lx, {"s": {**ok, "cid": "zz"}}).path == "s.cid"
    assert bad(lx, {"s": {"cid": CIDS[0]}}).path == "s.uri"


# --- formats ------------------------------------------------------------------------------

GOOD = {
    "did": ["did:plc:z72i7hdynmk6r22z27h6tvur", "did:web:localhost%3A2583", "did:method:a:b"],
    "handle": ["alice.pds1.test", "a.co", "xn--ls8h.example.com"],
    "nsid": ["io.atdata.dataset", "com.example.fooBar", "a-b.c.d1"],
    "tid": ["3jzfcijpj2z2a", "2222222222222"],
    "record-key": ["self", "3jzfcijpj2z2a", "a:b~c_d.e-f"],
    "at-uri": [
        "at://did:plc:abc/io.atdata.dataset/3jzfcijpj2z2a",
        "at://alice.test",
        "at://a.co/com.b.c",
    ],
    "cid": CIDS,
    "datetime": ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123456+05:30"],
    "uri": ["https://example.com/x?y=1", "s3://bucket/key", "at://did:plc:abc"],
    "language": ["en", "en-US", "zh-Hant-TW", "i-default"],
    "at-identifier": ["did:plc:abc", "alice.test"],
}
BAD = {
    "did": ["did:PLC:abc", "did:plc:", "did:plc:abc:", "plc:abc", "did:plc:a b"],
    "handle": ["alice", "-a.com", "a.1com", "a..com", "a_b.com"],
    "nsid": ["io.atdata", "io.atdata.1x", "io..atdata.x", "io.atdata.data-set", "1o.atdata.x"],
    "tid": ["3jzfcijpj2z2", "kjzfcijpj2z2a", "3JZFCIJPJ2Z2A"],
    "record-key": [".", "..", "a/b", "", "a b"],
    "at-uri": [
        "https://x.com",
        "at://",
        "at://did:plc:abc/notnsid",
        "at://alice.test/a.b.c/x?y",
        "at://a b",
    ],
    "cid": ["short", "bafy!!!!!!!!!!!!"],
    "datetime": [
        "2024-01-02",
        "2024-01-02T03:04:05",
        "2024-01-02t03:04:05Z",
        "2024-13-02T03:04:05Z",
        "2024-01-02T03:04:05-00:00",
    ],
    "uri": ["no scheme", "https://a b"],
    "language": ["english!", "e", "en_US"],
    "at-identifier": ["did:x", "not a handle"],
}


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_formats_accept_and_reject(fmt: str) -> None:
    for v in GOOD[fmt]:
        assert check_format(fmt, v) is None, (fmt, v)
    for v in BAD[fmt]:
        assert check_format(fmt, v) is not None, (fmt, v)


@given(st.text(max_size=40))
@SETTINGS
def test_format_checkers_never_crash(s: str) -> None:
    for fmt in GOOD:
        assert check_format(fmt, s) in (None,) or isinstance(check_format(fmt, s), str)


@given(st.text(alphabet=string.ascii_letters + " /\\\n", min_size=1, max_size=20))
@SETTINGS
def test_whitespace_breaks_identifier_formats(s: str) -> None:
    if any(c in s for c in " \n/\\"):
        for fmt in ("did", "handle", "nsid", "tid", "record-key", "at-identifier"):
            assert check_format(fmt, s) is not None


# --- params -------------------------------------------------------------------------------

QUERY = doc(
    {
        "main": {
            "type": "query",
            "parameters": {
                "type": "params",
                "required": ["q"],
                "properties": {
                    "q": {"type": "string", "maxLength": 10},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                    "all": {"type": "boolean"},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 5},
                        "maxLength": 3,
                    },
                    "ns": {"type": "array", "items": {"type": "integer"}},
                },
            },
            "output": {"encoding": "application/json"},
        }
    },
    "com.example.query",
)


def test_params_are_coerced_defaulted_and_checked() -> None:
    lx = Lexicons([QUERY])
    out = lx.validate_params(
        "com.example.query", {"q": "x", "all": "true", "tags": ["a", "b"], "ns": ["1", "-2"]}
    )
    assert out == {"q": "x", "limit": 25, "all": True, "tags": ["a", "b"], "ns": [1, -2]}
    assert lx.validate_params("com.example.query", {"q": ["x"], "limit": "7"})["limit"] == 7
    assert lx.validate_params("com.example.query", {"q": "x", "tags": "one"})["tags"] == ["one"]
    cases = [
        ({}, "q"),
        ({"q": "x", "limit": "0"}, "limit"),
        ({"q": "x", "limit": "1.5"}, "limit"),
        ({"q": "x", "limit": "01"}, "limit"),
        ({"q": "x", "all": "yes"}, "all"),
        ({"q": "x", "tags": ["toolong"]}, "tags[0]"),
        ({"q": "x", "tags": ["a"] * 4}, "tags"),
        ({"q": "x", "ns": ["1", "z"]}, "ns[1]"),
        ({"q": "x", "bogus": "1"}, "bogus"),
        ({"q": ["a", "b"]}, "q"),
        ({"q": "x" * 11}, "q"),
    ]
    for params, path in cases:
        with pytest.raises(LexiconError) as exc:
            lx.validate_params("com.example.query", params)
        assert exc.value.path == path, (params, str(exc.value))
    with pytest.raises(LexiconError, match="not an XRPC method"):
        lx.validate_params("com.atproto.repo.strongRef", {})


# --- property tests: records generated from the lexicons ----------------------------------


def _format_strategy(fmt: str) -> st.SearchStrategy[str]:
    b32 = "abcdefghijklmnopqrstuvwxyz234567"
    did = st.text(alphabet=b32, min_size=24, max_size=24).map(lambda s: f"did:plc:{s}")
    label = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
    handle = st.builds(lambda a, b: f"{a}.{b}.test", label, label)
    nsid = st.builds(lambda a, b: f"io.example.{a}{b}", label, label)
    tid = st.from_regex(r"[2-7a-j][2-7a-z]{12}", fullmatch=True)
    ident = st.one_of(did, handle)
    return {
        "did": did,
        "handle": handle,
        "at-identifier": ident,
        "nsid": nsid,
        "tid": tid,
        "record-key": st.from_regex(r"[a-zA-Z0-9_~:-]{1,20}", fullmatch=True),
        "cid": st.sampled_from(CIDS),
        "at-uri": st.builds(lambda i, n, t: f"at://{i}/{n}/{t}", ident, nsid, tid),
        "uri": st.builds(lambda a: f"https://example.com/{a}", label),
        "language": st.sampled_from(["en", "en-GB", "de"]),
        "datetime": st.datetimes(timezones=st.just(UTC))
        .filter(lambda d: d.year >= 1000)
        .map(lambda d: d.isoformat().replace("+00:00", "Z")),
    }[fmt]


def values(lx: Lexicons, lex_id: str, d: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Valid values for def `d`; past depth 4 optional properties are left out (recursive types)."""
    t = d["type"]
    if t == "string":
        if "const" in d:
            return st.just(d["const"])
        if "enum" in d:
            return st.sampled_from(d["enum"])
        if "format" in d:
            return _format_strategy(d["format"])
        lo, hi = d.get("minLength", 0), min(d.get("maxLength", 50), 50 + d.get("minLength", 0))
        hi = min(hi, d.get("maxGraphemes", hi))
        if lo:
            return st.text(alphabet="0123456789abcdef", min_size=lo, max_size=max(lo, hi))
        return st.text(max_size=hi // 4).filter(
            lambda s: (
                len(s.encode()) <= d.get("maxLength", 10**9)
                and grapheme_length(s) <= d.get("maxGraphemes", 10**9)
            )
        )
    if t == "integer":
        if "enum" in d:
            return st.sampled_from(d["enum"])
        return st.integers(d.get("minimum", -(2**53)), d.get("maximum", 2**53))
    if t == "boolean":
        return st.booleans()
    if t == "array":
        return st.lists(
            values(lx, lex_id, d["items"], depth + 1),
            min_size=d.get("minLength", 0),
            max_size=min(d.get("maxLength", 3), 3),
        )
    if t == "object":
        props = d.get("properties", {})
        req = set(d.get("required", ()))
        nullable = set(d.get("nullable", ()))

        def prop(name: str) -> st.SearchStrategy[Any]:
            s = values(lx, lex_id, props[name], depth + 1)
            return st.one_of(st.none(), s) if name in nullable else s

        return st.fixed_dictionaries(
            {n: prop(n) for n in props if n in req},
            optional={n: prop(n) for n in props if n not in req} if depth < 4 else {},
        )
    if t == "ref":
        from atdata.lexicon._document import absolute_ref

        ref = absolute_ref(lex_id, d["ref"])
        return values(lx, ref.partition("#")[0], lx.get_def(ref), depth + 1)
    if t == "union":
        from atdata.lexicon._document import absolute_ref

        members = []
        for r in d["refs"]:
            ref = absolute_ref(lex_id, r)
            members.append(
                values(lx, ref.partition("#")[0], lx.get_def(ref), depth + 1).map(
                    lambda v, ref=ref: {**v, "$type": ref}
                )
            )
        return st.one_of(members)
    if t == "blob":
        mimes = [m.replace("*", "x") for m in d.get("accept", ["*/*"])]
        return st.builds(
            blob,
            st.sampled_from(mimes),
            st.integers(0, d.get("maxSize", 2**40)),
            st.sampled_from(CIDS),
        )
    if t == "bytes":
        return st.binary(max_size=min(d.get("maxLength", 16), 16)).map(
            lambda b: {"$bytes": base64.b64encode(b).decode()}
        )
    if t == "cid-link":
        return st.sampled_from(CIDS).map(lambda c: {"$link": c})
    if t == "unknown":  # keys marked with "~": what is inside an unknown value is free
        keys = st.text(max_size=5).map(lambda k: "~" + k)
        return st.dictionaries(keys, st.integers(), max_size=3)
    if t == "null":
        return st.none()
    raise AssertionError(t)


RECORD_NSIDS = sorted(
    n for n in default_lexicons() if default_lexicons().get_def(n)["type"] == "record"
)


def record_strategy(nsid: str) -> st.SearchStrategy[dict[str, Any]]:
    lx = default_lexicons()
    records = values(lx, nsid, lx.get_def(nsid)["record"]).map(lambda r: {"$type": nsid, **r})
    return records.map(_peer_schema_rules) if nsid == "science.alt.dataset.schema" else records


def _peer_schema_rules(rec: dict[str, Any]) -> dict[str, Any]:
    """Peer schema records are checked beyond their lexicon (atdata.lexicon._peer): a semver
    version and one JSON Schema body."""
    body = {"$type": "science.alt.dataset.schema#jsonSchemaFormat", "properties": {}}
    return {**rec, "version": "1.0.0", "schema": body}


def _leaves(v: Any, path: str = ""):
    """Every (path, value) inside `v` except blob internals, whose errors name the blob."""
    if path:
        yield path, v
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _leaves(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _leaves(x, f"{path}[{i}]")


def _set(v: Any, path: str, new: Any) -> None:
    import re

    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for p in parts[:-1]:
        v = v[int(p[1:-1])] if p.startswith("[") else v[p]
    last = parts[-1]
    if last.startswith("["):
        v[int(last[1:-1])] = new
    else:
        v[last] = new


@pytest.mark.parametrize("nsid", RECORD_NSIDS)
@given(data=st.data())
@SETTINGS
def test_generated_records_pass(nsid: str, data: st.DataObject) -> None:
    default_lexicons().validate_record(nsid, data.draw(record_strategy(nsid)))


def _wrong(v: Any) -> Any:
    if isinstance(v, bool):
        return "true"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return 7
    if isinstance(v, list):
        return {"not": "a list"}
    return ["not", "an", "object"]


@pytest.mark.parametrize("nsid", RECORD_NSIDS)
@given(data=st.data())
@SETTINGS
def test_mutated_records_fail_naming_the_path(nsid: str, data: st.DataObject) -> None:
    rec = data.draw(record_strategy(nsid))
    leaves = [(p, v) for p, v in _leaves(rec) if v is not None and ".~" not in p]
    path, value = data.draw(st.sampled_from(leaves))
    mutated = copy.deepcopy(rec)
    new = data.draw(st.sampled_from([_wrong(value), 1.5]))
    _set(mutated, path, new)
    with pytest.raises(LexiconError) as exc:
        default_lexicons().validate_record(nsid, mutated)
    err_path = exc.value.path
    assert err_path and (path == err_path or path.startswith(err_path)), (path, str(exc.value))


@pytest.mark.parametrize("nsid", RECORD_NSIDS)
@given(data=st.data())
@SETTINGS
def test_records_missing_a_required_property_fail(nsid: str, data: st.DataObject) -> None:
    required = default_lexicons().get_def(nsid)["record"].get("required", [])
    if not required:
        return
    rec = data.draw(record_strategy(nsid))
    name = data.draw(st.sampled_from(required))
    del rec[name]
    with pytest.raises(LexiconError) as exc:
        default_lexicons().validate_record(nsid, rec)
    assert exc.value.path == name
