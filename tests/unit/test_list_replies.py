"""Reading LIST replies (names quoted, atoms, literals, modified UTF-7) and the usual Sent names."""

from __future__ import annotations

from dripd.mailbox import imap, sent


def test_list_replies_are_read_whatever_the_server_quotes() -> None:
    lines: list[bytes | bytearray | str] = [
        b'(\\HasNoChildren \\Sent) "/" "Sent Items"',
        b"(\\HasNoChildren) NIL INBOX",
        b'(\\Sent \\HasNoChildren) "." {13}',
        bytearray(b"[Gmail]/Sent"),
        b'() "." "&AMk-l&AOk-ments envoy&AOk-s"',
        b'(\\Noselect) "/" "a \\"quoted\\" name"',
        b"List completed.",
    ]
    listed = imap._listed(lines)
    assert [(f.name, sorted(f.attributes)) for f in listed] == [
        ("Sent Items", ["\\HasNoChildren", "\\Sent"]),
        ("INBOX", ["\\HasNoChildren"]),
        ("[Gmail]/Sent", ["\\HasNoChildren", "\\Sent"]),
        ("Éléments envoyés", []),
        ('a "quoted" name', ["\\Noselect"]),
    ]
    assert sent.by_name(["INBOX", "Trash", "sent items", "Sent Messages"]) == "sent items"
    assert sent.by_name(["INBOX", "INBOX.Sent"]) == "INBOX.Sent"
    assert sent.by_name(["INBOX", "Archive"]) is None
