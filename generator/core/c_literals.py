"""C and C++ source literals for values that come from users: the one place that escapes them.

Every value a spec (or the PKI) puts into generated C/C++ goes through `c_string_literal`. The result is a plain
narrow string literal whose bytes are exactly the UTF-8 (or given) bytes of the value, in C and in C++, whatever
the value holds: quotes, backslashes, `??/` (trigraphs: `?` is always written `\\?`), `*/` and `/*` (harmless
inside a literal; their second character is escaped anyway so a reader never sees a comment marker), newlines and
control characters, and non-ASCII bytes (octal escapes with all three digits, so the next character can never
extend an escape; hex escapes would swallow following hex digits).
"""

from __future__ import annotations

import re

# Printable ASCII that stands for itself inside "...": all but '"' and '\\' (escaped) and '?' (trigraphs).
_PLAIN = {c for c in range(0x20, 0x7F)} - {ord('"'), ord("\\"), ord("?")}
_NAMED = {ord('"'): '\\"', ord("\\"): "\\\\", ord("?"): "\\?", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}
# Each byte (as the latin-1 character of the same number) -> its text inside a literal; str.translate applies it.
_BYTE_TEXT = [_NAMED.get(byte) or (chr(byte) if byte in _PLAIN else f"\\{byte:03o}") for byte in range(256)]
# The second character of "*/" or "/*" (looked up in the value, so "*/*" escapes both the '/' and the last '*').
_COMMENT_MARK = re.compile(r"(?<=\*)/|(?<=/)\*")

# Longest piece of one literal per source line when a value is split (PEM text is split at its own newlines).
_MAX_PIECE = 76


def _escape_bytes(data: bytes) -> str:
    text = data.decode("latin-1")          # one character per byte, the same number
    if "*/" not in text and "/*" not in text:
        return text.translate(_BYTE_TEXT)
    parts, start = [], 0
    for mark in _COMMENT_MARK.finditer(text):
        parts += [text[start:mark.start()].translate(_BYTE_TEXT), f"\\{ord(mark.group()):03o}"]
        start = mark.end()
    parts.append(text[start:].translate(_BYTE_TEXT))
    return "".join(parts)


def c_string_literal(value: str | bytes) -> str:
    """`value` as one C/C++ string literal on one line, e.g. `"a\\"b"`; str values are encoded as UTF-8."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return f'"{_escape_bytes(data)}"'


def c_string_literal_lines(value: str | bytes, indent: str = "    ") -> str:
    """`value` as adjacent literals, one source line each (split after every newline in the value and every
    76 bytes), for long text such as PEM. Adjacent literals concatenate, so the bytes are the same as
    `c_string_literal(value)`; each piece is escaped on its own, so no escape is ever cut in two."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    pieces: list[bytes] = []
    for line in data.splitlines(keepends=True) or [b""]:
        while len(line) > _MAX_PIECE:
            cut = _MAX_PIECE
            while cut > 0 and 0x80 <= line[cut] < 0xC0:  # keep a UTF-8 sequence whole (readability only)
                cut -= 1
            cut = cut or _MAX_PIECE
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)
    # '*' at the end of one piece and '/' at the start of the next never meet: each piece is its own literal.
    return "\n".join(f"{indent}{c_string_literal(piece)}" for piece in pieces)


def c_comment_text(value: str) -> str:
    """`value` made safe inside a // or /* */ comment (and a ; or # comment line): one printable ASCII line with
    no '*' (so no comment terminator), no '\\' (a line continuation) and no '?' (trigraphs); those become '_'."""
    return "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in "*\\?" else "_" for ch in value)
