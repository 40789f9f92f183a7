"""Hostile tar shards, built byte by byte (no tar library would write most of them).

Each builder returns the whole shard as bytes. They cover what a hostile user tried against the
reader: sizes that point backwards, sizes no machine can hold, headers that are noise, archives
cut short, and floods of members the reader has to pass over.
"""

from __future__ import annotations

import random

import msgpack

BLOCK = 512
END = bytes(2 * BLOCK)


def header(name: bytes, size: int | bytes = 0, typeflag: bytes = b"0") -> bytes:
    """A ustar header block with a valid checksum; ``size`` as a number or a raw 12-byte field."""
    hdr = bytearray(BLOCK)
    hdr[0 : len(name)] = name
    hdr[100:108] = b"0000644\0"
    hdr[108:116] = b"0000000\0"
    hdr[116:124] = b"0000000\0"
    if isinstance(size, int):
        size = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    assert len(size) == 12
    hdr[124:136] = size
    hdr[136:148] = b"14000000000\0"
    hdr[156:157] = typeflag
    hdr[257:263] = b"ustar\0"
    hdr[263:265] = b"00"
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes, data: bytes, typeflag: bytes = b"0") -> bytes:
    return header(name, len(data), typeflag) + padded(data)


def pax_record(key: str, value: str) -> bytes:
    """One ``"<len> key=value\\n"`` record, its length counting its own digits."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def pax(records: bytes, name: bytes = b"PaxHeaders/x") -> bytes:
    return member(name, records, b"x")


def sample(key: str) -> bytes:
    """A good sample member: a msgpack map a schema-free Dataset decodes."""
    return member(f"{key}.msgpack".encode(), msgpack.packb({"label": 1, "name": key}))


def backwards_pax_size(typeflag: bytes = b"5") -> bytes:
    """The loop of the "found in use" report: ``size=-1536`` in a pax header in front of a
    directory (or unknown-type) member sends the next header back to the pax header (3.5 KB)."""
    return sample("a") + pax(pax_record("size", "-1536")) + header(b"d/", 0, typeflag) + END


def pax_size(value: str, typeflag: bytes = b"0") -> bytes:
    """A pax size override of any spelling in front of a member."""
    return sample("a") + pax(pax_record("size", value)) + header(b"b.msgpack", 0, typeflag) + END


def header_size(field: bytes) -> bytes:
    """A raw 12-byte size field (octal, signed, base-256...) on a regular member."""
    return sample("a") + header(b"b.msgpack", field) + bytes(BLOCK) + END


def garbage(seed: int, n: int = 3584) -> bytes:
    """Random bytes: no valid header at all."""
    return random.Random(seed).randbytes(n)


def garbage_after_valid_header(seed: int) -> bytes:
    """A good sample, then headers with valid checksums over random fields."""
    rng = random.Random(seed)
    out = sample("a")
    for _ in range(4):
        raw = bytearray(rng.randbytes(BLOCK))
        raw[148:156] = b" " * 8
        raw[148:156] = b"%06o\0 " % sum(raw)
        out += bytes(raw)
    return out + END


def unknown_type_flood(count: int = 3000) -> bytes:
    """Many members of a type the reader does not know (each must not cost a log line)."""
    return sample("a") + header(b"u", 0, b"Z") * count + sample("b") + END


def huge_extended_header(typeflag: bytes) -> bytes:
    """A pax or GNU long-name header claiming a terabyte of records."""
    return sample("a") + header(b"././@LongLink", 1 << 40, typeflag) + bytes(BLOCK) + END


def truncated_at_member_boundary() -> bytes:
    return b"".join(sample(f"{i:03d}") for i in range(5))


def truncated_inside_member() -> bytes:
    return (sample("a") + member(b"b.msgpack", bytes(5000)))[: 2 * BLOCK + BLOCK + 1000]


def hostile_shards() -> dict[str, bytes]:
    """Every hostile shard by a name that says what it holds."""
    return {
        "pax-size-negative-before-directory": backwards_pax_size(b"5"),
        "pax-size-negative-before-unknown-type": backwards_pax_size(b"Z"),
        "pax-size-not-a-number": pax_size("12abc"),
        "pax-size-overflowing": pax_size("9" * 40),
        "pax-size-huge": pax_size(str(1 << 61)),
        "octal-size-negative": header_size(b"-0000003000\0"),
        "base256-size-negative": header_size(b"\xff" * 12),
        "base256-size-huge": header_size(b"\x80" + (1 << 80).to_bytes(11, "big")),
        "octal-size-beyond-eof": header_size(b"77777777777\0"),
        "huge-pax-header": huge_extended_header(b"x"),
        "huge-gnu-long-name": huge_extended_header(b"L"),
        "garbage": garbage(1),
        "garbage-with-valid-checksums": garbage_after_valid_header(2),
        "unknown-type-flood": unknown_type_flood(),
        "truncated-at-member-boundary": truncated_at_member_boundary(),
        "truncated-inside-member": truncated_inside_member(),
        "empty-file": b"",
    }
