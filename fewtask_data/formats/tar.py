"""A minimal tar writer and reader for our own shards.

tarfile costs ~100 us per member, these a few. The output is plain GNU tar (readable
by tar, tarfile and webdataset) and byte-reproducible: members carry mode 0644,
mtime 0, uid/gid 0 and no user names, so the same members always give the same bytes.
"""

from __future__ import annotations

from typing import Iterator

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
END = ZERO_BLOCK * 2  # the end-of-archive marker
GNU_MAGIC = b"ustar  \0"


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _template() -> bytes:
    h = bytearray(BLOCK)
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = _octal(0, 8)  # uid, gid
    h[136:148] = _octal(0, 12)  # mtime
    h[148:156] = b" " * 8  # the checksum counts its own field as spaces
    h[257:265] = GNU_MAGIC
    return bytes(h)


TEMPLATE = _template()
TEMPLATE_SUM = sum(TEMPLATE)


def _header(name: bytes, size: int, typeflag: bytes = b"0") -> bytes:
    h = bytearray(TEMPLATE)
    size_field = _octal(size, 12)
    h[0 : len(name)] = name
    h[124:136] = size_field
    h[156:157] = typeflag
    checksum = TEMPLATE_SUM + sum(name) + sum(size_field) + typeflag[0]
    h[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(h)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def member(name: str, data: bytes) -> list[bytes]:
    """The byte pieces of one regular-file member (header, data, padding)."""
    raw = name.encode()
    parts = []
    if len(raw) > 100:  # GNU long name: a pseudo-member holding the name, then a truncated header
        long = raw + b"\0"
        parts += [_header(b"././@LongLink", len(long), b"L"), long, _padding(len(long))]
    parts += [_header(raw[:100], len(data)), data, _padding(len(data))]
    return parts


def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def members(data: bytes, off: int = 0, stop: int | None = None, check: bool = True) -> Iterator[tuple[str, int, int]]:
    """(member name, payload offset, size) of the regular files in tar bytes from byte
    ``off`` to ``stop`` (default: the end-of-archive block). ``check`` verifies each header's
    checksum (skip it when the whole shard's sha256 was checked). Raises ValueError on a
    bad header or data cut short."""
    longname = None
    stop = len(data) if stop is None else stop
    while off < stop:
        if off + BLOCK > len(data):
            raise ValueError("unexpected end of data")
        hdr = data[off : off + BLOCK]
        if hdr == ZERO_BLOCK:
            return
        try:
            size = int(_field(hdr[124:136]).strip() or b"0", 8)
            if check and sum(hdr[:148]) + 256 + sum(hdr[156:]) != int(_field(hdr[148:156]).strip() or b"0", 8):
                raise ValueError
        except ValueError:
            raise ValueError(f"bad tar header checksum at byte {off}") from None
        start = off + BLOCK
        if start + size > len(data):
            raise ValueError("unexpected end of data")
        kind = hdr[156:157]
        if kind == b"L":
            longname = _field(data[start : start + size]).decode()
        elif kind in (b"0", b"\0"):
            name = _field(hdr[:100]).decode()
            prefix = _field(hdr[345:500]) if hdr[257:263] == b"ustar\0" else b""
            yield longname or (f"{prefix.decode()}/{name}" if prefix else name), start, size
            longname = None
        off = start + size + (-size % BLOCK)
