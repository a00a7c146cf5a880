"""C string literals escape byte by byte as the rule says (quotes, backslash, '?', named controls, octal for the
rest, and the second character of every "*/" or "/*"), however the escaping is done quickly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from generator.core.c_literals import c_string_literal, c_string_literal_lines

NAMED = {ord('"'): '\\"', ord("\\"): "\\\\", ord("?"): "\\?", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def escaped_byte_by_byte(data: bytes) -> str:
    out, previous = [], -1
    for byte in data:
        if byte in NAMED:
            out.append(NAMED[byte])
        elif (byte, previous) in ((ord("/"), ord("*")), (ord("*"), ord("/"))):
            out.append(f"\\{byte:03o}")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
        previous = byte
    return '"' + "".join(out) + '"'


@given(st.binary(max_size=300) | st.text(alphabet='*/?"\\\n\tab01\x00\xff€', max_size=60).map(str.encode))
def test_every_value_is_escaped_exactly_as_the_rule_says(data):
    assert c_string_literal(data) == escaped_byte_by_byte(data)


def test_comment_markers_in_a_row_have_each_second_character_escaped():
    assert c_string_literal("a*/*/b") == '"a*\\057\\052\\057b"'


def test_a_pem_split_over_lines_keeps_every_byte():
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB" + b"A" * 100 + b"\n-----END CERTIFICATE-----\n"
    joined = "".join(line.strip()[1:-1] for line in c_string_literal_lines(pem).splitlines())
    assert f'"{joined}"' == c_string_literal(pem)
