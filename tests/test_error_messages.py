"""Error messages a user meets first: one line, naming what is wrong in the user's terms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from atdata import (
    Dataset,
    DecodeError,
    FieldTypeError,
    SampleValueError,
    packable,
    write_samples,
)
from atdata._codec import unpack
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray


@packable(name="errors.Pixels", version="1.0.0")
class Pixels:
    image: NDArray[np.uint8]
    label: str


def test_a_class_without_fields_is_refused_clearly() -> None:
    with pytest.raises(FieldTypeError, match="Empty has no fields"):

        @packable
        class Empty:
            """Nothing to store."""


def test_a_dtype_mismatch_names_numpy_dtypes() -> None:
    with pytest.raises(
        SampleValueError, match=r"^field 'image': dtype float32 is not the declared uint8$"
    ):
        Pixels(image=np.zeros((2, 2), dtype=np.float32), label="x")


def test_a_corrupt_message_says_why() -> None:
    # msgpack's FormatError has no text: the message must not end in an empty reason
    with pytest.raises(DecodeError, match="invalid msgpack message: FormatError$"):
        unpack(b"\xc1")
    with pytest.raises(DecodeError, match="invalid msgpack message: FormatError$"):
        Pixels.from_bytes(b"\x82\xa5image\xc1")


@given(st.binary(max_size=64))
def test_every_decode_error_has_a_reason(data: bytes) -> None:
    try:
        Pixels.from_bytes(data)
    except DecodeError as e:
        text = str(e)
        assert "\n" not in text
        assert not text.rstrip().endswith(":") and ":  " not in text, text


def test_a_missing_optional_dependency_says_what_to_install() -> None:
    # a fresh interpreter where aiohttp cannot be imported, as without the appview extra
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "from atdata.cli import main\n"
        "sys.exit(main(['appview', 'serve', '--no-follow', '--port', '1']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "error: this command needs aiohttp, which is not installed: pip install 'atdata[appview]'"
    )


@packable(name="errors.Label", version="1.0.0")
class Label:
    label: str


def test_a_dataset_of_a_non_sample_type_is_refused_at_once(tmp_path: Path) -> None:
    write_samples([Label("a")], str(tmp_path / "l-%06d.tar"))
    with pytest.raises(TypeError, match=r"^Dataset\[int\]: int is not a @packable sample class$"):
        Dataset[int](str(tmp_path / "l-000000.tar"))


def test_shards_hold_one_sample_type(tmp_path: Path) -> None:
    pixels = Pixels(image=np.zeros((2, 2), dtype=np.uint8), label="x")
    with pytest.raises(TypeError, match="sample '00000001' is a Label .* are Pixels"):
        write_samples([pixels, Label("a")], str(tmp_path / "m-%06d.tar"))
    # the same type again (or schema-free dicts) is fine
    infos = write_samples([Label("a"), Label("b")], str(tmp_path / "ok-%06d.tar"))
    assert [i.samples for i in infos] == [2]


def test_publishing_shards_under_another_schema_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    from atdata.atmosphere import Client, PublishError

    infos = write_samples([Label("a"), Label("b")], str(tmp_path / "p-%06d.tar"))
    client = Client("http://127.0.0.1:9")  # nothing listens: the check must come first
    with pytest.raises(PublishError, match=r"does not hold errors\.Pixels samples .*field 'image'"):
        client.publish_dataset(infos, name="mismatch", schema=Pixels, progress=False)


def test_a_nested_class_that_is_not_packable_is_named_as_such() -> None:
    class Plain:
        x: int

    with pytest.raises(FieldTypeError, match="Plain is a class that is not @packable"):

        @packable
        class Holder:
            inner: Plain

    with pytest.raises(FieldTypeError, match="cannot contain itself"):

        @packable
        class Node:
            child: Node | None = None


def test_plain_unsupported_types_keep_the_short_message() -> None:
    import enum

    class Colour(enum.Enum):
        RED = 1

    with pytest.raises(
        FieldTypeError, match=r"^field 'c': annotation \S*Colour is not a supported"
    ):

        @packable
        class Paint:
            c: Colour


@pytest.mark.parametrize(
    "expr",
    [
        "MIT",
        "CC-BY-4.0",
        "MIT OR Apache-2.0",
        "(MIT AND BSD-3-Clause) OR Apache-2.0",
        "GPL-2.0-or-later WITH Classpath-exception-2.0",
        "GPL-2.0+",
        "LicenseRef-my-terms",
        "DocumentRef-tool-1.2:LicenseRef-custom",
    ],
)
def test_spdx_expressions_are_accepted(expr: str) -> None:
    from atdata.atmosphere.spdx import check_license

    assert check_license(expr) == expr


@pytest.mark.parametrize(
    "expr", ["", "CC BY 4.0", "Apache 2.0", "MIT OR", "(MIT", "MIT)", "AND MIT", "free text!"]
)
def test_a_license_that_is_not_spdx_is_refused_before_publishing(expr: str, tmp_path: Path) -> None:
    from atdata.atmosphere import Client, PublishError

    infos = write_samples([Label("a")], str(tmp_path / "l-%06d.tar"))
    with pytest.raises(PublishError, match="is not an SPDX license expression"):
        Client("http://127.0.0.1:9").publish_dataset(
            infos, name="x", schema=Label, license=expr, progress=False
        )


def test_login_to_a_dead_pds_names_the_url_and_the_cause() -> None:
    """Was only 'failed: NetworkError'; a socket bound but not listening refuses connections."""
    import socket

    from atdata import AtdataError
    from atdata.atmosphere import Client

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        with pytest.raises(AtdataError) as info:
            Client(url).login("alice.test", "not-a-real-password")
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert url in message and "alice.test" in message
    assert "Connection refused" in message, message
    assert "not-a-real-password" not in message
