"""Error messages a user meets first: one line, naming what is wrong in the user's terms."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from atdata import DecodeError, FieldTypeError, SampleValueError, packable
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
