"""Why a recipient failed, as a small enum: from the status code and the server's words.

The remote server's own words win over the code when they are specific (a
"5.7.1 ... user unknown" is an unknown user, not a policy block), then the
RFC 3463 code, then "other". Pure.

What it means for a contact (see `bounces.Failure.bounces_contact`): only a
permanent failure for a reason that is the recipient's (unknown user, domain
gone, a mailbox full for good, too large, other) bounces the contact. A policy
or reputation block is about the rep's mail, not the address: nobody bounces
and the rep hears about it.
"""

from __future__ import annotations

import enum
import re


class Reason(enum.StrEnum):
    UNKNOWN_USER = "unknown user"
    MAILBOX_FULL = "mailbox full"
    POLICY = "policy or spam block"
    DOMAIN_GONE = "domain gone"
    TOO_LARGE = "message too large"
    TEMPORARY = "rate or temporary"
    OTHER = "other"


_WORDS: tuple[tuple[Reason, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        (
            Reason.POLICY,
            r"spam|blocklist|blacklist|block ?list|\blisted (?:at|by|on)\b|\brbl\b|spamhaus|"
            r"dnsbl|reputation|policy reasons|not accepted (?:for|due to) policy|dmarc|"
            r"\bspf\b|dkim|content (?:rejected|filter)|rejected (?:due to|for) (?:content|policy)|"
            r"message (?:was )?(?:blocked|rejected) (?:by|as|because)|bulk mail|junk|"
            r"suspicious|virus|malware|poor reputation|access denied.{0,40}(?:ip|sender)|"
            r"sender (?:address )?(?:rejected|blocked)|client host .{0,60}blocked|"
            # more of the wordings sisimai's Blocked, SpamDetected, PolicyViolation and
            # Rejected tables know: the sender's server, address or content is refused
            r"blocked (?:using|by|for abuse|- see)|was blocked|black ?list|denied by policy|"
            r"(?:local|security|organizational) (?:polic|settings)|polic(?:y|ies) violation|"
            r"bad sender ip|banned (?:sending ip|content)|dynamic ips?\b|open proxy|unsolicited|"
            r"message filtered|mail content denied|rejecting (?:mail|banned) content|uribl|drbl|"
            r"helo command rejected|client host rejected|not allowed to (?:send|connect|post)|"
            r"bad ip profile|sender verify failed|invalid sender|sender (?:was|is) (?:rejected|in)|"
            r"not pre-approved|\bbatv\b|administrative prohibition|delivery not authori[sz]ed|"
            r"not (?:currently )?accepting mail from your ip|smtp server of your isp|"
            r"members-only list|closed mailing list|illegal attachment|mass mailer|"
            r"has not passed validation|"
            # Facebook's own codes: its policy (POL-) refusals of the sender's server
            r"\bPOL-[PT]\d\b|"
            # the receiving server wants the sender's server allow-listed or confirmed first
            r"white ?list|allow ?list|(?:sender|server) (?:is )?not (?:white|allow) ?listed|"
            r"requires? (?:sender |server )?confirmation|confirm (?:this|your) (?:mail )?server",
        ),
        (
            Reason.MAILBOX_FULL,
            r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the )?(?:storage|quota)|"
            r"insufficient (?:system )?storage|mailbox size limit|out of storage|disk full|"
            r"full mailbox|storage allocation|inbox is full|box is full|user is over|"
            r"mailbox.{0,40}(?:exceeded|limit)|more messages than|mailbox exceeds allowed size|"
            r"(?:disk|mailbox|storage|user|diskspace|domaindisk|userdisk) ?quota|"
            r"over (?:the )?(?:allowed |disk )?quota|"
            r"exceeding (?:its|their|the) (?:mailbox )?quota|"
            r"quota violation|(?:insufficient|not (?:enough|sufficient)) (?:disk |storage )?space|"
            r"does not have enough space|no space left|mailfolder is full|space has been used up|"
            r"too much mail data|allowed storage|destinataire pleine",
        ),
        (
            Reason.TOO_LARGE,
            r"message (?:size )?(?:exceeds|too (?:large|big))|too large|size limit|"
            r"message is larger|exceeds (?:the )?(?:maximum|fixed maximum) (?:message )?size|"
            r"exee?ded the maximum size|message (?:file )?too big|(?:message|mail) length exceeds|"
            r"max(?:imum)? (?:inbound )?message size|taille limite du message|line limit exceeded|"
            r"\b(?:MSG-P1|INT-P2)\b",  # Facebook's codes for a message over its size
        ),
        (
            # the domain itself, before the user wordings ("domain does not exist")
            Reason.DOMAIN_GONE,
            r"domain (?:does not exist|not found|is not reachable|must exist|name not found)|"
            r"no such domain|unknown domain|mail domain .{0,40} is unknown|host unreachable|"
            r"name or service not known|unroutable address",
        ),
        (
            Reason.UNKNOWN_USER,
            r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|person)|"
            r"unknown (?:recipient|mailbox|address|local[- ]part)|does not exist|doesn't exist|"
            r"not exist|invalid (?:recipient|mailbox|address|user)|recipient (?:address )?rejected|"
            r"address rejected|mailbox (?:unavailable|not found|disabled|inactive)|"
            r"account (?:is )?(?:disabled|inactive|closed|suspended|expired|deactivated)|"
            r"not (?:a )?(?:valid|known) (?:user|recipient|mailbox)|no mailbox|"
            r"user not found|recipient not found|no longer (?:available|valid|active)|"
            r"addressee unknown|not listed in|undeliverable address|no such account|"
            r"doesn't have an? .{0,40}account|"
            r"bad destination mailbox|mailbox .{0,30}not (?:found|exist)|unknown or illegal|"
            r"invalid final delivery userid|administrativ\w* disabled|"
            r"recipient name is not recogni|\b(?:RCP-P1|INT-P[134])\b|"  # Facebook's codes
            # Domino's "not listed in the directory", in Japanese, Spanish and French
            r"ディレクトリ(?:のリストにありません|には見つかりません)|"
            r"no se encuentra en el directorio|"
            r"non r[ée]pertori[ée] dans l'annuaire|"
            # more of sisimai's UserUnknown and Suspend wordings
            r"bad address|address (?:invalid|unknown|not present)|"
            r"mailbox (?:is )?(?:unavailable|inactive|invalid|not present|frozen|disabled)|"
            r"mailbox unavaiable|can't accept user|destination addresses were unknown|"
            r"recipient (?:unknown|not ok|is not (?:accepted|local)|refuses to accept)|"
            r"email (?:address|name) (?:could not be|is not) found|no one at this address|"
            r"no longer accepts mail|not an active address|no account by that name|"
            r"no mail ?box available|user (?:not (?:active|known)|missing home directory)|"
            r"badrcptto|badrecipientto|validrcptto|envelope recipient (?:has been denied|is in)|"
            r"not a local address|recipient notfound|unknown virtual user|utilisateur inconnu|"
            r"nessun utente|no existe (?:dicha persona|ese usuario)|"
            r"following recipients was undeliverable|list of allowed rcpthosts|"
            r"(?:account|mailbox|user|recipient)\b.{0,30}suspended|currently suspended|"
            r"deactivated mailbox|inactive (?:account|user)|invalid/inactive|"
            r"user is terminated|(?:is|been) disabled|account (?:is )?locked|archived recipient|"
            r"destinataire archiv|"
            # the address as written cannot be an address (Exim's "malformed address")
            r"malformed (?:recipient )?address|incorrectly constructed|"
            # German, French and Japanese plain-words notices: the address does not exist
            r"(?:empfänger|benutzer|adresse|postfach)\w*[^\n]{0,30}?(?:existiert nicht|unbekannt)|"
            r"destinataire (?:invalide|inconnu)|adresse invalide|"
            r"(?:アドレス|宛先|ユーザ)[^\n]{0,20}?(?:存在しません|見つかりません)",
        ),
        (
            Reason.DOMAIN_GONE,
            r"host (?:or domain name )?not found|domain (?:does not exist|not found)|"
            r"domain name not found|"
            r"name service error|no mx|mx record|host unknown|unknown host|nxdomain|"
            r"unrouteable (?:domain|address)|no route to host|"
            r"domain .{0,40}(?:not exist|no longer)|"
            r"not resolv|could not be resolved|dns error|bad domain|invalid domain name|"
            r"couldn't find any host|couldn't find a mail exchanger|no mx found",
        ),
        (
            Reason.TEMPORARY,
            r"rate limit|too many|try again later|temporar|deferred|greylist|"
            r"timed? ?out|connection (?:refused|reset|lost)|will retry|service unavailable|"
            r"envelope expired|delivery time expired|not delivered within",
        ),
    )
)

_CODES: dict[str, Reason] = {
    "5.1.0": Reason.UNKNOWN_USER,
    "5.1.1": Reason.UNKNOWN_USER,
    "5.1.6": Reason.UNKNOWN_USER,
    "5.2.1": Reason.UNKNOWN_USER,
    "5.1.2": Reason.DOMAIN_GONE,
    "5.1.10": Reason.DOMAIN_GONE,
    "5.4.4": Reason.DOMAIN_GONE,
    "4.4.4": Reason.DOMAIN_GONE,
    "5.2.2": Reason.MAILBOX_FULL,
    "4.2.2": Reason.MAILBOX_FULL,
    "5.2.3": Reason.TOO_LARGE,
    "5.3.4": Reason.TOO_LARGE,
}


def reason_of(status: str | None, diagnostic: str) -> Reason:
    """The reason a recipient failed, from its RFC 3463 code and the server's words."""
    for reason, pattern in _WORDS:
        if pattern.search(diagnostic):
            return reason
    if status in _CODES:
        return _CODES[status]
    if status and status.startswith("5.7."):
        return Reason.POLICY
    if status and status.startswith("4."):
        return Reason.TEMPORARY
    return Reason.OTHER
