"""OpenSSL's subject-name hash (`openssl crl -hash`, X509_NAME_hash_ex): the file name a hashed CRL directory uses.

Erlang's ssl_crl_hash_dir (RabbitMQ's `crl_cache`) finds a CRL as `<hash>.r<N>` of its issuer's name, by the same
hash: SHA-1 over the name's canonical encoding (every string value as a UTF8String, leading and trailing white space
removed, inner runs folded to one space, ASCII lower-cased; the RDN sets' DER without the outer SEQUENCE), its first
four bytes read little-endian (crypto/x509/x_name.c x509_name_canon, asn1_string_canon; x509_cmp.c X509_NAME_hash_ex).
"""

from __future__ import annotations

import hashlib

from cryptography import x509

_WHITESPACE = b" \t\n\v\f\r"


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _canonical_text(value: str) -> bytes:
    raw = value.encode("utf-8").strip(_WHITESPACE)
    folded = bytearray()
    for byte in raw:
        if byte in _WHITESPACE:
            if folded and folded[-1] == 0x20:
                continue
            byte = 0x20
        folded.append(byte + 32 if 0x41 <= byte <= 0x5A else byte)
    return bytes(folded)


def name_hash(name: x509.Name) -> str:
    """The 8 hex digits `openssl x509 -subject_hash` / `openssl crl -hash` print for this name."""
    canonical = b""
    for rdn in name.rdns:
        members = sorted(_der(0x30, _oid(attribute.oid.dotted_string)
                              + _der(0x0C, _canonical_text(str(attribute.value))))
                         for attribute in rdn)
        canonical += _der(0x31, b"".join(members))
    digest = hashlib.sha1(canonical).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def crl_hash_file_name(crl_pem: bytes) -> str:
    """`<issuer hash>.r0`: the CRL's name in a hashed CRL directory."""
    return f"{name_hash(x509.load_pem_x509_crl(crl_pem).issuer)}.r0"
