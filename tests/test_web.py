"""The AppView's web page.

In headless Chromium, against `atdata appview serve` following the devnet where account A
published a dataset: the rendered DOM of the dataset page holds its name, at:// URI, schema
fields and the load snippet; a search submitted through the page's own GET form finds it; a
screenshot is not blank. On a seeded index (records are untrusted input): everything is
escaped, filters and paging work, bad input gets a 400 page and unknown datasets a 404.
"""

from __future__ import annotations

import asyncio
import html
import html.parser
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import pytest
from _fixtures.appview_index import dataset_record, lens_record, schema_record
from _fixtures.newcomer import Published, RunningAppView
from atdata_appview.db import Store
from atdata_appview.web import dataset_path
from atdata_appview.web.pages import load_snippet, ragged_fields
from hypothesis import given
from hypothesis import strategies as st

# -- headless Chromium ----------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium(*args: str, timeout: float = 90) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: run `make system-deps` (apt package chromium)")
    with tempfile.TemporaryDirectory(prefix="atdata-chromium-") as profile:
        done = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(url: str) -> str:
    return chromium("--dump-dom", url)


class _Forms(html.parser.HTMLParser):
    """Collects forms (action, method, inputs) and links from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")


def parse(dom: str) -> _Forms:
    p = _Forms()
    p.feed(dom)
    return p


def text_of(dom: str) -> str:
    """Visible-ish text: tags dropped, entities decoded, whitespace collapsed."""
    no_tags = re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style)[^>]*>.*?</\1>", " ", dom))
    return re.sub(r"\s+", " ", html.unescape(no_tags))


def png_colours(path: Path, limit: int = 16) -> set[bytes]:
    """Distinct pixel values of an 8-bit RGB/RGBA PNG (stops counting at ``limit``)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        row_start = y * (stride + 1)
        kind, row = raw[row_start], bytearray(raw[row_start + 1 : row_start + 1 + stride])
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = prev[i]
            upleft = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
                row[i] = (row[i] + pred) & 0xFF
        for x in range(0, stride, bpp * 7):  # a sample of pixels is plenty
            colours.add(bytes(row[x : x + bpp]))
        if len(colours) >= limit:
            break
        prev = row
    return colours


def test_png_colours_tells_blank_from_drawn(tmp_path: Path) -> None:
    """The screenshot check can fail: a one-colour PNG has one colour."""

    def png(rows: list[bytes], width: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            crc = zlib.crc32(kind + body)
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

        raw = b"".join(b"\x01" + r for r in rows)  # Sub filter on every row
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )

    blank = tmp_path / "blank.png"
    blank.write_bytes(png([b"\xff\xff\xff" + b"\x00" * 3 * 99] * 20, 100))
    assert png_colours(blank) == {b"\xff\xff\xff"}
    drawn = tmp_path / "drawn.png"
    drawn.write_bytes(png([b"\x10\x20\x30" + b"\x05\x00\x00" * 99] * 20, 100))
    assert len(png_colours(drawn)) > 1


# -- the page on the devnet, in Chromium ------------------------------------------------------


@pytest.mark.devnet
@pytest.mark.browser
def test_dataset_page_in_chromium(appview: RunningAppView, published: Published) -> None:
    url = appview.url + dataset_path(published.uri)
    dom = dump_dom(url)
    text = text_of(dom)
    assert published.name in text
    assert published.uri in text
    assert "Thirty 8x8 glyphs" in text
    # the schema table: one row per field, with the declared dtype
    table = re.search(r"(?s)<table class=\"schema\">.*?</table>", dom)
    assert table is not None, dom[:2000]
    rows = text_of(table.group(0))
    for field_name in ("image", "label", "caption"):
        assert field_name in rows
    assert "|u1 (uint8)" in rows
    # shards: sizes and sha256 of what A wrote
    for info in published.shards:
        assert info.sha256 in text
    # the lens from this schema
    assert published.lens_uri in text
    # the snippet is valid Python naming the URI
    snippet = re.search(r"(?s)<pre id=\"load-snippet\">(.*?)</pre>", dom)
    assert snippet is not None
    code = html.unescape(snippet.group(1))
    assert f'atdata.load_dataset("{published.uri}", split="train")' in code
    compile(code, "<snippet>", "exec")


@pytest.mark.devnet
@pytest.mark.browser
def test_search_from_the_box_finds_it(appview: RunningAppView, published: Published) -> None:
    home = parse(dump_dom(appview.url + "/"))
    (form,) = home.forms
    assert (form["method"] or "get").lower() == "get"
    (box,) = [i for i in form["inputs"] if i.get("type") == "search"]
    # what the browser does on submit: a plain GET of action?name=value
    query = {box["name"]: "glyphs newcomer"}
    search_url = urljoin(appview.url + "/", form["action"]) + "?" + urlencode(query)
    found = dump_dom(search_url)
    links = parse(found).links
    target = dataset_path(published.uri)
    assert any(link == target for link in links), links
    assert published.name in text_of(found)

    # the tag facet narrows to it; following the card's link opens its page
    by_tag = dump_dom(appview.url + "/?" + urlencode({"tag": published.tag}))
    assert [link for link in parse(by_tag).links if link.startswith("/datasets/")] == [target]
    assert published.uri in text_of(dump_dom(appview.url + target))

    nothing = dump_dom(appview.url + "/?" + urlencode({"q": "zzqx-no-such-words"}))
    assert target not in parse(nothing).links
    assert "No datasets match" in text_of(nothing)


@pytest.mark.devnet
@pytest.mark.browser
def test_screenshot_is_not_blank(
    appview: RunningAppView, published: Published, tmp_path: Path
) -> None:
    shot = tmp_path / "dataset.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1200,900", appview.url + dataset_path(published.uri)
    )
    assert shot.exists() and shot.stat().st_size > 1000
    assert len(png_colours(shot)) > 1


# -- untrusted records on a seeded index ------------------------------------------------------

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>\"'&"


def _seed(store: Store, n_plain: int = 0) -> None:
    async def go() -> None:
        async with store.transaction() as tx:
            tx.set_repo("did:plc:mallory", handle="mallory.test", pds="http://127.0.0.1:1")
            schema = schema_record("evil.Type", fields=("ok",))
            schema["fields"].append(
                {"name": "img", "type": {"kind": "ndarray", "dtype": "<f4", "shape": [-1, 3]}}
            )
            schema["description"] = HOSTILE
            tx.upsert_record("did:plc:mallory", "io.atdata.schema", "s1", "bafys1", schema)
            rec = dataset_record(
                "evil " + HOSTILE,
                description=HOSTILE,
                tags=("evil", HOSTILE[:60]),
                license="MIT",
                schema="at://did:plc:mallory/io.atdata.schema/s1",
                shards=2,
            )
            rec["shards"][0]["url"] = "https://x.example/" + HOSTILE
            tx.upsert_record("did:plc:mallory", "io.atdata.dataset", "d1", "bafyd1", rec)
            lens = lens_record(
                HOSTILE,
                "at://did:plc:mallory/io.atdata.schema/s1",
                "at://did:plc:mallory/io.atdata.schema/s2",
            )
            lens["description"] = HOSTILE
            tx.upsert_record("did:plc:mallory", "io.atdata.lens", "l1", "bafyl1", lens)
            for i in range(n_plain):
                plain = dataset_record(
                    f"plain-{i:02d}",
                    tags=("plain", "odd" if i % 2 else "even"),
                    license="CC0-1.0" if i % 3 == 0 else "MIT",
                    created=f"2026-02-{i + 1:02d}T00:00:00.000Z",
                )
                tx.upsert_record(
                    "did:plc:mallory", "io.atdata.dataset", f"p{i}", f"bafyp{i}", plain
                )

    asyncio.run(go())


@pytest.fixture
def seeded(tmp_path: Path, serve_store: Any) -> str:
    store = Store(f"sqlite:///{tmp_path / 'web.sqlite'}")
    _seed(store, n_plain=25)
    try:
        yield serve_store(store).url
    finally:
        store.close()


def _no_injected_markup(page: str) -> None:
    # our own page has exactly one <script> (the copy button) and no <img>
    assert page.count("<script") == 1
    assert "<img" not in page
    assert "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")


def test_untrusted_records_are_escaped(seeded: str) -> None:
    search = httpx.get(seeded + "/", params={"q": "evil"})
    assert search.status_code == 200
    _no_injected_markup(search.text)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in search.text
    page = httpx.get(seeded + "/datasets/did:plc:mallory/d1")
    assert page.status_code == 200
    _no_injected_markup(page.text)
    text = text_of(page.text)
    assert HOSTILE in text  # shown as text, not interpreted
    assert "(?, 3)" in text and "<f4 (float32)" in text
    csp = page.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in page.text or f"<script nonce='{nonce}'>" in page.text
    assert "default-src 'none'" in csp


def test_filters_and_paging(seeded: str) -> None:
    def names(resp: httpx.Response) -> list[str]:
        return re.findall(r"<h2><a href='[^']+'>([^<]+)</a></h2>", resp.text)

    first = httpx.get(seeded + "/", params={"tag": "plain"})
    assert first.status_code == 200
    got = names(first)
    assert len(got) == 20
    more = re.search(r"<a href='([^']+)'>Next page", first.text)
    assert more is not None
    rest = httpx.get(seeded + more.group(1).replace("&amp;", "&"))
    got += names(rest)
    assert sorted(got) == [f"plain-{i:02d}" for i in range(25)]
    assert "Next page" not in rest.text

    odd_cc0 = names(httpx.get(seeded + "/", params=[("tag", "plain"), ("tag", "odd"),
                                                     ("license", "CC0-1.0")]))  # fmt: skip
    assert sorted(odd_cc0) == [f"plain-{i:02d}" for i in range(25) if i % 2 and i % 3 == 0]

    # facet links toggle: the "odd" link on a page filtered by it removes it again
    on = httpx.get(seeded + "/", params=[("tag", "plain"), ("tag", "odd")]).text
    toggle = re.search(r"<a class='on' href='([^']+)'><span>odd</span>", on)
    assert toggle is not None
    back = httpx.get(seeded + toggle.group(1).replace("&amp;", "&"))
    assert len(names(back)) == 20 and "tag=odd" not in toggle.group(1)


def test_bad_input_and_unknown_datasets(seeded: str) -> None:
    bad = httpx.get(seeded + "/", params={"sort": "sideways"})
    assert bad.status_code == 400 and "Bad search" in bad.text
    cursor = httpx.get(seeded + "/", params={"cursor": "not-a-cursor"})
    assert cursor.status_code == 400
    missing = httpx.get(seeded + "/datasets/did:plc:nobody/nothing")
    assert missing.status_code == 404
    assert "at://did:plc:nobody/io.atdata.dataset/nothing" in missing.text


def test_load_snippet_is_python_for_any_uri() -> None:
    tricky = 'at://did:plc:a"b/io.atdata.dataset/x\\y'
    code = load_snippet(tricky, ["test", "train"])
    compile(code, "<snippet>", "exec")
    assert 'split="train"' in code
    assert 'split="validation"' in load_snippet("at://x/y/z", ["validation"])
    assert "split" not in load_snippet("at://x/y/z", [])


def test_dataset_links_work_for_did_web_authors(tmp_path: Path, serve_store: Any) -> None:
    """did:web DIDs carry percent-escapes (`did:web:host%3A8443`); links must round-trip."""
    did = "did:web:data.example%3A8443"
    store = Store(f"sqlite:///{tmp_path / 'web.sqlite'}")

    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(did, handle="data.example", pds="https://data.example:8443")
            tx.upsert_record(did, "io.atdata.dataset", "3kweb", "bafyweb", dataset_record("webby"))

    asyncio.run(seed())
    try:
        url = serve_store(store).url
        listing = httpx.get(url + "/", params={"q": "webby"}).text
        href = re.search(r"<h2><a href='([^']+)'>webby</a>", listing).group(1)
        assert href == dataset_path(f"at://{did}/io.atdata.dataset/3kweb")
        page = httpx.get(url + href)
        assert page.status_code == 200
        assert f"at://{did}/io.atdata.dataset/3kweb" in page.text
    finally:
        store.close()


@given(st.text())
def test_escaping_round_trips_any_text(text: str) -> None:
    """Whatever a record holds comes out as text: no markup characters survive, and
    unescaping gives the original back."""
    from atdata_appview.web._html import h, render

    escaped = h(text)
    assert not set("<>\"'") & set(escaped)
    assert html.unescape(escaped) == text
    cell = render("<td title='{v}'>{v}</td>", v=text)
    assert cell.count("<") == 2 and cell.count("'") == 2
    assert h(escaped) is escaped  # already-safe markup is not escaped twice


def test_filter_breadcrumb_ends_without_a_separator(seeded: str) -> None:
    for params in ([("tag", "plain")], [("tag", "plain"), ("tag", "odd")]):
        page = httpx.get(seeded + "/", params=params).text
        crumb = re.search(r"<p class=meta>(Filtered by [^<]*)</p>", page)
        assert crumb is not None, page[:500]
        assert crumb.group(1) == "Filtered by " + ", ".join(f"tag {v}" for _, v in params)


def test_load_snippet_does_not_promise_stacking_for_ragged_fields() -> None:
    dataset = {
        "schema": {
            "record": {
                "fields": [
                    {"name": "image", "type": {"kind": "ndarray", "shape": [28, 28]}},
                    {"name": "points", "type": {"kind": "ndarray", "shape": [-1, 3]}},
                    {"name": "audio", "type": {"kind": "ndarray"}},
                    {"name": "label", "type": {"kind": "primitive", "primitive": "int"}},
                ]
            }
        }
    }
    assert ragged_fields(dataset) == ["points"]
    code = load_snippet("at://did:plc:a/io.atdata.dataset/x", [], ragged_fields(dataset))
    compile(code, "<snippet>", "exec")
    assert "arrive stacked" not in code
    assert "points" in code and "batch.samples" in code
    fixed = load_snippet("at://did:plc:a/io.atdata.dataset/x", [], [])
    assert "arrive stacked" in fixed
