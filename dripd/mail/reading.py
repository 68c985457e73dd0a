"""Reading hostile mail: headers, address lists, parts and their text, within bounds.

Every reader of incoming mail (incoming, mailtext, autoreply, bounces, classify,
meetings) reads through here, so a header or a part is decoded one way, with one
set of fallbacks, and the same size and depth bounds hold everywhere.

Mail from the outside is hostile or broken often enough: undecodable
encoded-words, unknown or wrong charsets, raw 8-bit headers, address lists the
stdlib's parser chokes on, broken base64, thousands of parts, deep nesting.
Headers are read from their raw text (`Message.raw_items`), never through
`policy.default`'s header parser, and decoded here. Each function returns a best
effort and never raises; the exceptions caught are the ones these inputs raise
(tests/unit/test_reading.py feeds it garbage to keep it so).
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import quopri
import re
from collections.abc import Iterator
from email.message import EmailMessage, Message

MAX_HEADER = 4000  # characters of one header value that are looked at
MAX_PARTS = 200  # MIME parts looked at per message: a hostile message can hold thousands
MAX_DEPTH = 8  # nesting of multiparts and attached messages followed

_BLANK = frozenset({b" ", b"\t", b"\r", b"\n"})
_BOM = b"\xef\xbb\xbf"
_SPACE = re.compile(r"\s+")
_ESCAPED = re.compile("[\udc80-\udcff]")  # raw 8-bit bytes as the parser keeps them
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)

# --- headers -------------------------------------------------------------------------


def message(raw: bytes) -> EmailMessage:
    """A message's bytes parsed; never raises (a hopeless message parses as an empty one)."""
    # Blank lines or a UTF-8 byte-order mark before the headers (a message cut out of a
    # log or an mbox by hand, or saved by an editor) would make the whole message a body
    # without headers.
    if raw[:3] == _BOM:
        raw = raw[3:]
    raw = raw.lstrip(b" \t\r\n") if raw[:1] in _BLANK else raw
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    except IndexError:
        # CPython's parameter parser indexes past the end of an RFC 2231 name with nothing
        # after it ("Content-Type: text/plain; charse*"); compat32 splits parameters the
        # older way, and the message is read all the same.
        return _compat32(raw)
    except (ValueError, RecursionError):
        # The stdlib's parser gives up: an RFC 2231 parameter whose charset holds a NUL
        # (boundary*=utf-8\x00''b) is a ValueError; it recurses once per nesting level, and
        # ~1,000 levels are a RecursionError. The message reads as an empty one.
        return EmailMessage()
    assert isinstance(parsed, EmailMessage)
    return parsed


def _compat32(raw: bytes) -> EmailMessage:
    try:
        parsed = email.message_from_bytes(raw, EmailMessage, policy=email.policy.compat32)
    except (ValueError, RecursionError, IndexError):
        return EmailMessage()
    assert isinstance(parsed, EmailMessage)
    return parsed


def raw_header(msg: Message, name: str) -> str:
    """The first `name` header as written, unfolded onto one line; "" when absent.

    No decoding: what a mail system put there ("<>", "MAILER-DAEMON"), at most
    MAX_HEADER characters of it.
    """
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return _SPACE.sub(" ", str(value)[:MAX_HEADER]).strip()
    return ""


def header(msg: Message, name: str) -> str:
    """The first `name` header as readable text: encoded-words decoded; "" if absent."""
    return decode_words(raw_header(msg, name))


def has_header(msg: Message, name: str) -> bool:
    """Whether the message carries this header at all (even empty)."""
    return name in msg  # case-insensitive, on the raw header names


def header_map(msg: Message) -> dict[str, str]:
    """Every header by lower-case name (the first of repeated ones), as readable text."""
    found: dict[str, str] = {}
    for key, value in msg.raw_items():
        name = key.lower()
        if name not in found:
            found[name] = decode_words(_SPACE.sub(" ", str(value)[:MAX_HEADER]).strip())
    return found


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded, whitespace runs made one space.

    Raw 8-bit text (the parser keeps its bytes as surrogates) is read as UTF-8,
    else Windows-1252; an encoded-word's charset falls back the same way when it
    is unknown or wrong; a broken encoded-word keeps the text as it came.
    """
    text = _SPACE.sub(" ", value).strip()
    if _ESCAPED.search(text):
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    if "=?" not in text:
        return text
    try:
        parts = email.header.decode_header(text)
    except email.errors.HeaderParseError:  # a broken encoded-word: show it as it came
        return text
    pieces = [c if isinstance(c, str) else decode_bytes(c, charset) for c, charset in parts]
    return _SPACE.sub(" ", "".join(pieces)).strip()


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes as text: the declared charset if it decodes them, else UTF-8, else Windows-1252.

    A declared charset is often wrong (us-ascii on UTF-8 text, utf-8 on Latin-1
    text); text codecs only: a name like "base64" or "rot13" is not a charset.
    """
    for name in (_codec(charset), "utf-8"):
        if name:
            try:
                return data.decode(name)
            except UnicodeDecodeError:
                pass
    loose = data.decode("utf-8", "replace")
    if len(_UTF8_SEQUENCE.findall(data)) > loose.count("\ufffd"):
        return loose  # UTF-8 with a few broken bytes; Latin-1 text rarely forms UTF-8 sequences
    return data.decode("cp1252", "replace")


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip('"').lower())
    except (LookupError, ValueError):  # unknown; a NUL or a lone surrogate in the name
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


# --- address lists -------------------------------------------------------------------


def address(value: str) -> tuple[str, str]:
    """The display name and lower-cased address of a From-like header; "" for what is missing."""
    if not value:
        return "", ""
    name, found = email.utils.parseaddr(value)
    return name.strip(), found.strip().lower() if "@" in found else ""


def addresses(*values: str) -> tuple[str, ...]:
    """The lower-cased addresses of To/Cc-like header values, in order, without repeats."""
    found: list[str] = []
    for value in values:
        if value:
            pairs = email.utils.getaddresses([value])
            found.extend(a.strip().lower() for _, a in pairs if "@" in a)
    return tuple(dict.fromkeys(found))


# --- parts ---------------------------------------------------------------------------


def parts(
    msg: Message,
    *,
    into_messages: bool = False,
    max_parts: int = MAX_PARTS,
    max_depth: int = MAX_DEPTH,
) -> Iterator[Message]:
    """The leaf parts of a message in order: what multiparts hold, not the multiparts.

    An attached message (message/rfc822, message/delivery-status...) is a leaf;
    with `into_messages` its own parts follow it. At most `max_parts` parts are
    looked at and `max_depth` levels of nesting followed; a multipart whose
    boundary matches none of its lines is a leaf (its whole body is its text).
    """
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < max_parts:
        part, depth = stack.pop()
        seen += 1
        inner = _children(part)
        container = inner is not None and part.get_content_maintype() == "multipart"
        if not container:
            yield part
        if inner and depth < max_depth and (container or into_messages):
            stack.extend((child, depth + 1) for child in reversed(inner))


def _children(part: Message) -> list[Message] | None:
    if not part.is_multipart():
        return None
    return [child for child in part.get_payload() if isinstance(child, Message)]


def payload(part: Message) -> str:
    """A leaf part's body as written, transfer encoding not undone; "" for a container.

    8-bit bytes come back decoded with the part's charset, or as U+FFFD.
    """
    if part.is_multipart():
        return ""
    try:
        return str(part.get_payload())
    except ValueError:  # 8-bit text whose charset parameter is no name at all ("utf-8\x00")
        return ""


def attached(part: Message) -> Message | None:
    """The message a message/rfc822 part holds, when the parser made one of it."""
    inner = _children(part)
    return inner[0] if inner else None


def header_fields(text: str) -> Message:
    """Header fields written as text (a delivery-status block, a text/rfc822-headers part).

    As a message whose headers `header` reads; the text after a blank line is its body.
    """
    return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)


def filename(part: Message) -> str:
    """The part's file name; "" when it has none."""
    try:
        return str(part.get_filename() or "")
    # ValueError: an RFC 2231 name whose charset holds a NUL (filename*=utf-8\x00''x);
    # IndexError: one with nothing after it ("filenam*"), as `message` says
    except (ValueError, IndexError):
        return ""


def is_attachment(part: Message) -> bool:
    disposition = header(part, "content-disposition").split(";", 1)[0].strip().lower()
    return disposition == "attachment"


def param(part: Message, name: str) -> str:
    """A Content-Type parameter ("charset", "format"...) as written; "" when absent."""
    value = header(part, "content-type")
    match = re.search(rf'(?i)(?:^|;)\s*{name}\s*=\s*"?([^";\s]+)', value)
    return match.group(1) if match else ""


def part_text(part: Message, limit: int) -> str:
    """A leaf part's text, decoding at most about `limit` characters' worth.

    The transfer encoding undone leniently (stray base64 characters dropped, a
    cut-off tail padded), then the charset read as `decode_bytes` does.
    """
    cap = limit * 4 + 4  # encoded characters: base64 and quoted-printable expand text
    cte = header(part, "content-transfer-encoding").strip().lower()
    if cte in ("base64", "quoted-printable"):
        raw = payload(part)
        data = _unbase64(raw[:cap]) if cte == "base64" else quopri.decodestring(_ascii(raw[:cap]))
    else:
        decoded = part.get_payload(decode=True)
        data = decoded[:cap] if isinstance(decoded, bytes) else b""
    return decode_bytes(data, param(part, "charset") or None)[:limit]


def part_bytes(part: Message) -> bytes:
    """A part's content as bytes: an attached message flattened, a leaf decoded."""
    inner = _children(part)
    if inner is not None:
        return _flat(inner[0]) if inner else b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else payload(part).encode("utf-8", "replace")


def _flat(msg: Message) -> bytes:
    # Header lines as they came: refolding parses each header, and CPython's parser raises
    # IndexError on some real Message-IDs (Microsoft's `<[hex-BASE32=@microsoft.com]>` on
    # a line of its own).
    policy = msg.policy
    if isinstance(policy, email.policy.EmailPolicy):  # compat32 never refolds
        policy = policy.clone(refold_source="none")
    try:
        return msg.as_bytes(policy=policy)
    # ValueError: the generator writes some 8-bit bodies as ASCII (UnicodeEncodeError), or
    # decodes them with a charset parameter holding a NUL; it recurses once per nesting level
    except (ValueError, RecursionError, IndexError):
        return b""


def _ascii(text: str) -> bytes:
    return text.encode("ascii", "replace")


def _unbase64(raw: str) -> bytes:
    clean = re.sub(r"[^A-Za-z0-9+/]", "", raw)
    rest = len(clean) % 4
    if rest == 1:
        clean = clean[:-1]
    elif rest:
        clean += "=" * (4 - rest)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""
