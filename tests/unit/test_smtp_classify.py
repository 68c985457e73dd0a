"""Whose problem an SMTP reply is: real replies from the big providers and MTAs.

Policy (dripd/smtp.py): 4xx is temporary; a dead recipient bounces the contact;
quota, policy and sender reputation rest the mailbox until tomorrow; any other
5xx about the message fails that email; 530/535 mean the login is wrong.
Texts are as aiosmtplib hands them over: multi-line replies joined by newlines,
without the repeated reply code.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dripd.mailbox import smtp, tls

REPLIES = [
    # -- Gmail / Google Workspace ------------------------------------------------
    (
        550,
        "5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "5.1.1 double-checking the recipient's email address for typos or\n"
        "5.1.1 unnecessary spaces. Learn more at\n"
        "5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp",
        "rcpt",
        "recipient",
    ),
    (
        553,
        "5.1.2 We weren't able to find the recipient domain. Please check for any\n"
        "5.1.2 spelling errors, and make sure you didn't enter any spaces, periods,\n"
        "5.1.2 or other punctuation after the recipient's email address. - gsmtp",
        "rcpt",
        "recipient",
    ),
    (
        552,
        "5.2.2 The email account that you tried to reach is over quota and inactive.\n"
        "5.2.2 Please direct the recipient to\n"
        "5.2.2  https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        "rcpt",
        "recipient",
    ),
    (
        452,
        "4.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "4.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        "rcpt",
        "temporary",
    ),
    (
        550,
        "5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
        "5.4.5 sending limits go to\n"
        "5.4.5  https://support.google.com/a/answer/166852 - gsmtp",
        "mail",
        "sender",
    ),
    (550, "5.4.5 Daily user sending quota exceeded. - gsmtp", "data", "sender"),
    (421, "4.7.0 Try again later, closing connection. (EHLO) - gsmtp", "mail", "temporary"),
    (451, "4.3.0 Mail server temporarily rejected message. - gsmtp", "data", "temporary"),
    (
        550,
        "5.7.1 [203.0.113.5] Our system has detected an unusual rate of\n"
        "5.7.1 unsolicited mail originating from your IP address. To protect our\n"
        "5.7.1 users from spam, mail sent from your IP address has been blocked. - gsmtp",
        "data",
        "sender",
    ),
    (
        550,
        "5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
        "5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp",
        "data",
        "sender",
    ),
    (
        550,
        "5.7.0 Mail relay denied [203.0.113.5]. Invalid credentials for relay for one\n"
        "5.7.0 of the domains in: example.com - gsmtp",
        "rcpt",
        "sender",
    ),
    (
        552,
        "5.3.4 Your message exceeded Google's message size limits. Please visit\n"
        "5.3.4  https://support.google.com/mail/?p=MaxSizeError to view our size guidelines.",
        "data",
        "message",
    ),
    (530, "5.7.0 Authentication Required. Learn more at - gsmtp", "mail", "auth"),
    (535, "5.7.8 Username and Password not accepted. - gsmtp", "mail", "auth"),
    # -- Outlook / Office 365 / Exchange Online -----------------------------------------
    (
        550,
        "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "rcpt",
        "recipient",
    ),
    (550, "5.1.1 RESOLVER.ADR.ExRecipNotFound; not found", "data", "recipient"),
    (
        550,
        "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
        "rcpt",
        "recipient",
    ),
    (
        554,
        "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process "
        "message due to a permanent exception with message [BeginDiagnosticData]WASCL "
        "UserAction verdict is not None. Actual verdict is Suspend, ShowTierUpgrade.",
        "data",
        "sender",
    ),
    (
        554,
        "5.2.252 SendAsDenied; mike@example.com not allowed to send as sales@example.com; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
        "data",
        "sender",
    ),
    (550, "5.1.8 Access denied, bad outbound sender AS(42050000)", "rcpt", "sender"),
    (
        550,
        "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
        "mail",
        "sender",
    ),
    (
        550,
        "5.7.606 Access denied, banned sending IP [203.0.113.5]. To request removal "
        "from this list please visit https://sender.office.com/",
        "rcpt",
        "sender",
    ),
    (
        550,
        "5.7.60 SMTP; Client does not have permissions to send as this sender",
        "mail",
        "sender",
    ),
    (
        530,
        "5.7.57 Client not authenticated to send mail. [MW4PR03CA0001.namprd03.prod.outlook.com]",
        "mail",
        "auth",
    ),
    (452, "4.5.3 Too many recipients", "rcpt", "temporary"),
    (
        451,
        "4.7.500 Server busy. Please try again later from [203.0.113.5]. (AS843)",
        "mail",
        "temporary",
    ),
    (
        552,
        "5.3.4 Message size exceeds fixed maximum message size",
        "mail",  # answered at MAIL FROM ... SIZE=
        "message",
    ),
    (554, "5.4.14 Hop count exceeded - possible mail loop ATTR34", "data", "message"),
    (
        554,
        "5.6.211 Invalid MIME Content: Single text value size (32777) exceeds allowed "
        "maximum (32768) for the 'X-Custom' property.",
        "data",
        "message",
    ),
    (
        554,
        "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
        "MapiExceptionShutoffQuotaExceeded",
        "data",
        "recipient",
    ),
    # -- Yahoo / AOL -----------------------------------------------------------------
    (
        554,
        "delivery error: dd This user doesn't have a yahoo.com account (bob@yahoo.com) "
        "[0] - mta1055.mail.gq1.yahoo.com",
        "data",
        "recipient",
    ),
    (
        554,
        "delivery error: dd Sorry your message to bob@yahoo.com cannot be delivered. "
        "This mailbox is disabled (554.30). - mta1055.mail.gq1.yahoo.com",
        "data",
        "recipient",
    ),
    (552, "1 Requested mail action aborted, mailbox not found", "rcpt", "recipient"),
    (
        421,
        "4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected "
        "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "data",
        "temporary",
    ),
    (
        553,
        "5.7.1 [BL21] Connections will not be accepted from 203.0.113.5, because the ip "
        "is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        "mail",
        "sender",
    ),
    (
        554,
        "5.7.9 Message not accepted for policy reasons.  See "
        "https://postmaster.yahooinc.com/error-codes",
        "data",
        "sender",
    ),
    (
        550,
        "5.7.1 Unauthenticated email from example.com is not accepted due to domain's "
        "DMARC policy.",
        "data",
        "sender",
    ),
    # -- Postfix (+ Dovecot) ---------------------------------------------------------------
    (
        550,
        "5.1.1 <bob@x.com>: Recipient address rejected: User unknown in local recipient table",
        "rcpt",
        "recipient",
    ),
    (
        550,
        "5.1.1 <bob@x.com>: Recipient address rejected: User unknown in relay recipient table",
        "rcpt",
        "recipient",
    ),
    (
        450,
        "4.1.1 <bob@x.com>: Recipient address rejected: unverified address: "
        "host mx.x.com[198.51.100.7] said: 550 5.1.1 no such user",
        "rcpt",
        "temporary",
    ),
    (554, "5.7.1 <bob@x.com>: Relay access denied", "rcpt", "sender"),
    (
        553,
        "5.7.1 <mike@example.com>: Sender address rejected: not owned by user mike",
        "rcpt",
        "sender",
    ),
    (
        550,
        "5.1.0 <mike@example.com>: Sender address rejected: User unknown in virtual mailbox table",
        "rcpt",
        "sender",
    ),
    (
        554,
        "5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org",
        "rcpt",
        "sender",
    ),
    (552, "5.3.4 Message size exceeds fixed limit", "data", "message"),
    (552, "5.3.4 Message size exceeds fixed limit", "mail", "message"),
    (452, "4.3.1 Insufficient system storage", "mail", "temporary"),
    (451, "4.3.0 Error: queue file write error", "data", "temporary"),
    (552, "5.2.2 <bob@x.com> Quota exceeded (mailbox for user is full)", "rcpt", "recipient"),
    # -- Exim (cPanel) -------------------------------------------------------------------------
    (550, "Unrouteable address", "rcpt", "recipient"),
    (550, "No Such User Here", "rcpt", "recipient"),
    (
        550,
        "Verification failed for <mike@example.com>\nNo Such User Here\nSender verify failed",
        "rcpt",
        "sender",
    ),
    (550, "relay not permitted", "rcpt", "sender"),
    (552, "Message size exceeds maximum permitted", "data", "message"),
    (552, "Message size exceeds maximum permitted", "mail", "message"),
    (451, "Temporary local problem - please try later", "rcpt", "temporary"),
    # -- Amazon SES --------------------------------------------------------------------------
    (454, "Throttling failure: Maximum sending rate exceeded.", "mail", "temporary"),
    (454, "Temporary service failure", "data", "temporary"),
    (
        554,
        "Message rejected: Email address is not verified. The following identities failed "
        "the check in region US-EAST-1: mike@example.com",
        "data",
        "sender",
    ),
    (
        554,
        "Message rejected: Sending suspended for this account. For more information, please "
        "check the inbox of the email address associated with your AWS account.",
        "data",
        "sender",
    ),
    (554, "Transaction failed: Duplicate header 'Subject'.", "data", "message"),
    (535, "Authentication Credentials Invalid", "mail", "auth"),
]


@pytest.mark.parametrize(
    ("code", "text", "stage", "kind"),
    REPLIES,
    ids=[f"{code}-{stage}-{text[:40]}" for code, text, stage, _ in REPLIES],
)
def test_real_replies(code: int, text: str, stage: str, kind: str) -> None:
    assert smtp.classify(code, text, stage=stage) == kind  # type: ignore[arg-type]


def test_the_table_is_big_enough() -> None:
    assert len(REPLIES) >= 25
    assert {kind for *_, kind in REPLIES} == {
        "temporary",
        "recipient",
        "sender",
        "message",
        "auth",
    }


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_enhanced_code_decides_when_present(stage: str) -> None:
    assert smtp.classify(550, "5.1.1 whatever", stage=stage) == "recipient"  # type: ignore[arg-type]
    assert smtp.classify(550, "5.2.1 whatever", stage=stage) == "recipient"  # type: ignore[arg-type]
    assert smtp.classify(550, "5.7.1 whatever", stage=stage) == "sender"  # type: ignore[arg-type]
    assert smtp.classify(550, "5.4.5 whatever", stage=stage) == "sender"  # type: ignore[arg-type]


def test_rate_is_a_word_not_a_substring() -> None:
    # "generated", "separate": not about a sending rate.
    text = "5.6.0 Message contains a header generated by a separate tool"
    assert smtp.classify(554, text, stage="data") == "message"


STAGES = st.sampled_from(["mail", "rcpt", "data"])


@settings(max_examples=100, deadline=None)
@given(code=st.integers(400, 499), text=st.text(max_size=200), stage=STAGES)
def test_any_4xx_is_temporary(code: int, text: str, stage: str) -> None:
    assert smtp.classify(code, text, stage=stage) == "temporary"  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(code=st.integers(500, 599), text=st.text(max_size=200), stage=STAGES)
def test_any_5xx_is_a_permanent_kind(code: int, text: str, stage: str) -> None:
    kind = smtp.classify(code, text, stage=stage)  # type: ignore[arg-type]
    assert kind in ("recipient", "sender", "message", "auth")


# -- the envelope: dripd writes MAIL FROM / RCPT TO itself (no sendmail re-parsing) --


@pytest.mark.parametrize(
    ("address", "envelope"),
    [
        ("ann@example.org", b"<ann@example.org>"),
        ("o'neil+news@mail.example.co.uk", b"<o'neil+news@mail.example.co.uk>"),
        (" ann@example.org ", b"<ann@example.org>"),
        ("jo@bücher.example", b"<jo@xn--bcher-kva.example>"),  # IDN domain: punycode
    ],
)
def test_envelope_address(address: str, envelope: bytes) -> None:
    assert smtp.envelope_address(address) == envelope


@pytest.mark.parametrize(
    "address",
    [
        "jö@example.org",  # a non-ASCII mailbox name needs SMTPUTF8
        "ann@example.org>\r\nRCPT TO:<evil@example.org",  # command injection
        "a b@example.org",
        "<ann@example.org>",
        "ann@exa mple.org",
        "ann",
    ],
)
def test_envelope_address_refuses_what_cannot_go_in_a_command(address: str) -> None:
    with pytest.raises(smtp.SendError) as caught:
        smtp.envelope_address(address)
    assert caught.value.kind == "message"  # this email fails; the mailbox goes on


def test_a_connection_without_a_greeting_says_so() -> None:
    # A greeting that never came (a TLS port spoken to in clear, or a server
    # too busy to greet within the timeout) was shown as "127.0.0.1:993: ;".
    line = tls.connect_failure("127.0.0.1", 993, TimeoutError(), "starttls")
    assert line == (
        "cannot connect to 127.0.0.1:993: no greeting from the server; "
        'a port that begins with TLS (465, 993) needs security = "tls"'
    )
