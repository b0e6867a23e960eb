# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenPGP public keys without gpg: the fingerprints of the keys in a key file, and its verification.

A repository's signing key is pinned by the fingerprint of its primary key (RFC 4880 12.2: v4
fingerprint = SHA-1 over 0x99, the two-byte body length and the public-key packet body; RFC 9580:
v6 = SHA-256 over 0x9B, a four-byte length and the body; v5 the same with 0x9A). The managed host
has no gpg to rely on (and a key file must be checked before apt or rpm ever sees it), so the
packets are read here. Armored (ASCII) and binary key files are both accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

TAG_PUBLIC_KEY = 6
TAG_PUBLIC_SUBKEY = 14

_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----[ \t]*\r?\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----",
    re.DOTALL,
)
_FINGERPRINT = re.compile(r"(?:[0-9A-F]{40}|[0-9A-F]{64})")


class OpenPGPError(ValueError):
    """The data is not an OpenPGP public key file."""


def _crc24(data):
    crc = 0xB704CE
    for byte in bytearray(data):
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(data):
    """The binary packets of a key file: every armored block concatenated, or the bytes themselves."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    text = data.decode("ascii", "replace")
    blocks = list(_ARMOR.finditer(text))
    if not blocks:
        if b"-----BEGIN PGP" in data:
            raise OpenPGPError("an armored block that is not a public key block (-----BEGIN PGP PUBLIC KEY BLOCK-----)")
        return bytes(data)
    out = b""
    for block in blocks:
        lines = block.group("body").replace("\r", "").split("\n")
        # Armor headers (Version:, Comment:) end at the first empty line, when there are any.
        if "" in lines and any(":" in line for line in lines[:lines.index("")]):
            lines = lines[lines.index("") + 1:]
        payload = [line.strip() for line in lines if line.strip()]
        checksum = None
        if payload and payload[-1].startswith("="):
            checksum = payload.pop()[1:]
        try:
            raw = base64.b64decode("".join(payload), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OpenPGPError("the armored key is not valid base64: %s" % exc)
        if checksum is not None:
            try:
                expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
            except (binascii.Error, ValueError):
                raise OpenPGPError("the armored key's checksum line is not valid base64")
            if _crc24(raw) != expected:
                raise OpenPGPError("the armored key's checksum does not match its content (damaged download?)")
        out += raw
    return out


def armor(binary):
    """An ASCII-armored public key block of binary packets (for apt's .asc keyrings)."""
    encoded = base64.b64encode(binary).decode("ascii")
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    crc = base64.b64encode(_crc24(binary).to_bytes(3, "big")).decode("ascii")
    return "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n%s\n=%s\n-----END PGP PUBLIC KEY BLOCK-----\n" % (
        "\n".join(lines), crc)


def packets(binary):
    """(tag, body) of every packet, old and new packet formats (RFC 4880 4.2)."""
    data = bytearray(binary)
    pos = 0
    while pos < len(data):
        header = data[pos]
        if not header & 0x80:
            raise OpenPGPError("byte %d is not the start of an OpenPGP packet: not a key file" % pos)
        pos += 1
        if header & 0x40:  # new format
            tag = header & 0x3F
            body = b""
            while True:
                if pos >= len(data):
                    raise OpenPGPError("a packet length runs past the end of the data (truncated key?)")
                first = data[pos]
                if first < 192:
                    length, pos = first, pos + 1
                elif first < 224:
                    if pos + 1 >= len(data):
                        raise OpenPGPError("a packet length runs past the end of the data (truncated key?)")
                    length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
                elif first == 255:
                    length, pos = int.from_bytes(bytes(data[pos + 1:pos + 5]), "big"), pos + 5
                else:  # partial body length: only allowed in data packets, never in keys
                    partial = 1 << (first & 0x1F)
                    body += bytes(data[pos + 1:pos + 1 + partial])
                    pos += 1 + partial
                    continue
                body += bytes(data[pos:pos + length])
                pos += length
                break
        else:  # old format
            tag = (header >> 2) & 0x0F
            kind = header & 0x03
            if kind == 3:
                raise OpenPGPError("an indeterminate-length packet is not allowed in a key file")
            size = (1, 2, 4)[kind]
            length = int.from_bytes(bytes(data[pos:pos + size]), "big")
            pos += size
            body = bytes(data[pos:pos + length])
            pos += length
        if pos > len(data):
            raise OpenPGPError("a packet runs past the end of the data (truncated key?)")
        yield tag, body


def fingerprint(body):
    """The fingerprint of one public-key (or subkey) packet body, upper-case hex."""
    if not body:
        raise OpenPGPError("an empty public-key packet")
    version = bytearray(body)[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise OpenPGPError("public-key packet version %d is not supported (v4, v5, v6 are)" % version)


def primary_fingerprints(data):
    """The fingerprints of the primary keys in a key file (armored or binary), in file order."""
    found = [fingerprint(body) for tag, body in packets(dearmor(data)) if tag == TAG_PUBLIC_KEY]
    if not found:
        raise OpenPGPError("no public key in it")
    return found


def normalize_fingerprint(value):
    """A fingerprint as gpg prints it (spaces, lower case, 0x) as 40 or 64 upper-case hex digits, or None."""
    text = re.sub(r"\s+", "", str(value or "")).upper()
    if text.startswith("0X"):
        text = text[2:]
    return text if _FINGERPRINT.fullmatch(text) else None


def verify(data, allowed, variable="the key fingerprint", source="the key"):
    """The key file's primary fingerprints when each one is in `allowed`; else OpenPGPError naming `variable`.

    Every primary key must be allowed: apt trusts every key in a Signed-By file, so one
    unexpected key beside the right one is refused too.
    """
    wanted = [normalize_fingerprint(item) for item in allowed]
    if not wanted or None in wanted:
        raise OpenPGPError("%s must be 40 (or 64) hexadecimal digits, got %s" % (variable, ", ".join(map(str, allowed))))
    try:
        found = primary_fingerprints(data)
    except OpenPGPError as exc:
        raise OpenPGPError("%s is not an OpenPGP public key: %s" % (source, exc))
    unexpected = [item for item in found if item not in wanted]
    if unexpected:
        raise OpenPGPError(
            "%s has the fingerprint %s, expected %s: a repository key that is not the pinned one is refused. "
            "If this mirror signs with its own key, set %s to its fingerprint (after checking it out of band)."
            % (source, ", ".join(found), ", ".join(wanted), variable))
    return found
