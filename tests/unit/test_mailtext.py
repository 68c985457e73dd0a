"""Reading incoming mail: body text, the sender's own words, "please stop"."""

from __future__ import annotations

import base64
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

import dates
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.mail import mailtext, reading

# The quoted headers below name Tuesday 3 March, as mail clients write it in four languages:
# they are dated in a year ahead whose 3 March is a Tuesday (only the year is computed).
Y = dates.thursday_year()


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")


HEAD = (
    "From: Ann Lee <ann@example.org>\nTo: Mike Rowe <mike@acme.example>\n"
    "Subject: Re: Quick question\nMessage-ID: <r1@example.org>\nMIME-Version: 1.0\n"
)

# --- what the sender wrote: real clients' quoting, as body_text gives it ------------------

# Realistic replies to one of Mike Rowe's emails, and what Ann wrote herself.

ORIGINAL_EN = (
    "> Hi Ann,\n>\n> Would you have 15 minutes next week?\n>\n> Best,\n> Mike Rowe\n> Acme\n"
)
PLAIN_EN = "Hi Ann,\n\nWould you have 15 minutes next week?\n\nBest,\nMike Rowe\nAcme\n"
PLAIN_DE = (
    "Hallo Frau Lee,\n\nhätten Sie nächste Woche 15 Minuten Zeit?\n\nViele Grüße\nMike Rowe\n"
)
PLAIN_FR = (
    "Bonjour Ann,\n\nAuriez-vous 15 minutes la semaine prochaine ?\n\nCordialement,\nMike Rowe\n"
)
PLAIN_ES = "Hola Ann,\n\n¿Tendrías 15 minutos la semana que viene?\n\nSaludos,\nMike Rowe\n"

REPLIES: list[tuple[str, str, str]] = [
    (
        "gmail en",
        "Hi Mike,\n\nThursday at 2pm works for me. Send me an invite.\n\nAnn\n\n"
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n\n" + ORIGINAL_EN,
        "Hi Mike,\n\nThursday at 2pm works for me. Send me an invite.\n\nAnn",
    ),
    (
        "gmail en, attribution wrapped",
        f"Thursday works.\n\nOn Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example>\n"
        "wrote:\n\n" + ORIGINAL_EN,
        "Thursday works.",
    ),
    (
        "gmail de, attribution wrapped",
        "Hallo Herr Rowe,\n\ngerne, Donnerstag 14 Uhr.\n\nViele Grüße\nAnn Lee\n\n"
        f"Am Di., 3. März {Y} um 10:15 Uhr schrieb Mike Rowe <\nmike@acme.example>:\n\n"
        "> Hallo Frau Lee,\n>\n> hätten Sie nächste Woche 15 Minuten Zeit?\n",
        "Hallo Herr Rowe,\n\ngerne, Donnerstag 14 Uhr.\n\nViele Grüße\nAnn Lee",
    ),
    (
        "gmail fr",
        "Bonjour Mike,\n\nJeudi 14h me convient.\n\nAnn\n\n"
        f"Le mar. 3 mars {Y} à 10:15, Mike Rowe <mike@acme.example> a écrit :\n\n"
        "> Bonjour Ann,\n>\n> Auriez-vous 15 minutes la semaine prochaine ?\n",
        "Bonjour Mike,\n\nJeudi 14h me convient.\n\nAnn",
    ),
    (
        "gmail fr, attribution wrapped",
        f"Oui, appelez-moi.\n\nLe mar. 3 mars {Y} à 10:15, Mike Rowe <mike@acme.example> a\n"
        "écrit :\n\n> Bonjour Ann,\n",
        "Oui, appelez-moi.",
    ),
    (
        "gmail es",
        "Hola Mike,\n\nEl jueves a las 14h me va bien.\n\nAnn\n\n"
        f"El mar, 3 mar {Y} a las 10:15, Mike Rowe (<mike@acme.example>)\nescribió:\n\n"
        "> Hola Ann,\n>\n> ¿Tendrías 15 minutos la semana que viene?\n",
        "Hola Mike,\n\nEl jueves a las 14h me va bien.\n\nAnn",
    ),
    (
        "gmail en, thanks after greeting",
        "Hi Mike,\nThanks, that works. Let's do Tuesday.\n\nAnn\n\n"
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n" + ORIGINAL_EN,
        "Hi Mike,\nThanks, that works. Let's do Tuesday.\n\nAnn",
    ),
    (
        "gmail en, best in the text",
        "Hi Mike,\n\nBest, call me after 4pm, and\nthanks, I read your note.\n\nAnn\n\n"
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n" + ORIGINAL_EN,
        "Hi Mike,\n\nBest, call me after 4pm, and\nthanks, I read your note.\n\nAnn",
    ),
    (
        "gmail forward",
        "Bob, can you take this one?\n\n---------- Forwarded message ---------\n"
        f"From: Mike Rowe <mike@acme.example>\nDate: Tue, Mar 3, {Y} at 10:15 AM\n"
        "Subject: Quick question\nTo: Ann Lee <ann@example.org>\n\n" + PLAIN_EN,
        "Bob, can you take this one?",
    ),
    (
        "outlook desktop en",
        "Hi Mike,\n\nNot right now, maybe in Q3.\n\nRegards,\nAnn Lee\n\n"
        "-----Original Message-----\nFrom: Mike Rowe <mike@acme.example> \n"
        f"Sent: Tuesday, March 3, {Y} 10:15 AM\nTo: Ann Lee <ann@example.org>\n"
        "Subject: Quick question\n\n" + PLAIN_EN,
        "Hi Mike,\n\nNot right now, maybe in Q3.\n\nRegards,\nAnn Lee",
    ),
    (
        "outlook desktop de",
        "Hallo Herr Rowe,\n\nbitte rufen Sie mich an.\n\nMit freundlichen Grüßen\nAnn Lee\n\n"
        "-----Ursprüngliche Nachricht-----\nVon: Mike Rowe <mike@acme.example> \n"
        f"Gesendet: Dienstag, 3. März {Y} 10:15\nAn: Ann Lee <ann@example.de>\n"
        "Betreff: Kurze Frage\n\n" + PLAIN_DE,
        "Hallo Herr Rowe,\n\nbitte rufen Sie mich an.\n\nMit freundlichen Grüßen\nAnn Lee",
    ),
    (
        "outlook 2016 de, mailto",
        "Passt.\n\nVon: Mike Rowe [mailto:mike@acme.example] \n"
        f"Gesendet: Dienstag, 3. März {Y} 10:15\nAn: Ann Lee <ann@example.de>\n"
        "Betreff: Kurze Frage\n\n" + PLAIN_DE,
        "Passt.",
    ),
    (
        "outlook web en",
        "Sounds good, send the deck.\n\nAnn\n\n________________________________\n"
        f"From: Mike Rowe <mike@acme.example>\nSent: Tuesday, March 3, {Y} 10:15 AM\n"
        "To: Ann Lee <ann@example.org>\nSubject: Quick question\n\n" + PLAIN_EN,
        "Sounds good, send the deck.\n\nAnn",
    ),
    (
        "outlook web de",
        "Gerne, schicken Sie mir die Unterlagen.\n\n________________________________\n"
        f"Von: Mike Rowe <mike@acme.example>\nGesendet: Dienstag, 3. März {Y} 10:15\n"
        "An: Ann Lee <ann@example.de>\nBetreff: Kurze Frage\n\n" + PLAIN_DE,
        "Gerne, schicken Sie mir die Unterlagen.",
    ),
    (
        "outlook web fr",
        "Merci, je regarde.\n\n________________________________\n"
        f"De : Mike Rowe <mike@acme.example>\nEnvoyé : mardi 3 mars {Y} 10:15\n"
        "À : Ann Lee <ann@example.fr>\nObjet : Petite question\n\n" + PLAIN_FR,
        "Merci, je regarde.",
    ),
    (
        "outlook desktop fr",
        "Bonjour,\n\nPas pour le moment.\n\nCordialement,\nAnn\n\n-----Message d'origine-----\n"
        f"De : Mike Rowe <mike@acme.example> \nEnvoyé : mardi 3 mars {Y} 10:15\n"
        "À : Ann Lee <ann@example.fr>\nObjet : Petite question\n\n" + PLAIN_FR,
        "Bonjour,\n\nPas pour le moment.\n\nCordialement,\nAnn",
    ),
    (
        "outlook desktop es",
        "Hola Mike,\n\nAhora no, quizás en otoño.\n\nUn saludo,\nAnn\n\n"
        f"De: Mike Rowe <mike@acme.example> \nEnviado el: martes, 3 de marzo de {Y} 10:15\n"
        "Para: Ann Lee <ann@example.es>\nAsunto: Una pregunta\n\n" + PLAIN_ES,
        "Hola Mike,\n\nAhora no, quizás en otoño.\n\nUn saludo,\nAnn",
    ),
    (
        "outlook for mac",
        "Yes, let's talk.\n\nFrom: Mike Rowe <mike@acme.example>\n"
        f"Date: Tuesday, March 3, {Y} at 10:15 AM\nTo: Ann Lee <ann@example.org>\n"
        "Subject: Quick question\n\n" + PLAIN_EN,
        "Yes, let's talk.",
    ),
    (
        "outlook html, bold keys",
        "Fine by me.\n\n*From:* Mike Rowe <mike@acme.example>\n"
        f"*Sent:* Tuesday, March 3, {Y} 10:15 AM\n*To:* Ann Lee <ann@example.org>\n"
        "*Subject:* Quick question\n\n" + PLAIN_EN,
        "Fine by me.",
    ),
    (
        "outlook ios",
        "Yes please call me tomorrow.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n"
        "________________________________\nFrom: Mike Rowe <mike@acme.example>\n"
        f"Sent: Tuesday, March 3, {Y} 10:15:00 AM\nTo: Ann Lee <ann@example.org>\n"
        "Subject: Quick question\n\n" + PLAIN_EN,
        "Yes please call me tomorrow.",
    ),
    (
        "outlook android es",
        "Sí, llámame.\n\nObtener Outlook para Android<https://aka.ms/AAb9ysg>\n"
        "________________________________\nDe: Mike Rowe <mike@acme.example>\n"
        f"Enviado: martes, 3 de marzo de {Y} 10:15\nPara: Ann Lee <ann@example.es>\n"
        "Asunto: Una pregunta\n\n" + PLAIN_ES,
        "Sí, llámame.",
    ),
    (
        "iphone en",
        "Sure, Thursday works.\n\nSent from my iPhone\n\n"
        f"> On Mar 3, {Y}, at 10:15, Mike Rowe <mike@acme.example> wrote:\n> \n" + ORIGINAL_EN,
        "Sure, Thursday works.",
    ),
    (
        "iphone de",
        "Passt, Donnerstag geht.\n\nVon meinem iPhone gesendet\n\n"
        f"> Am 03.03.{Y} um 10:15 schrieb Mike Rowe <mike@acme.example>:\n> \n> Hallo Frau Lee,\n",
        "Passt, Donnerstag geht.",
    ),
    (
        "iphone fr",
        "Ok pour jeudi.\n\nEnvoyé de mon iPhone\n\n"
        f"> Le 3 mars {Y} à 10:15, Mike Rowe <mike@acme.example> a écrit :\n> \n> Bonjour Ann,\n",
        "Ok pour jeudi.",
    ),
    (
        "iphone es",
        "Perfecto, el jueves me va bien.\n\nEnviado desde mi iPhone\n\n"
        f"> El 3 mar {Y}, a las 10:15, Mike Rowe <mike@acme.example> escribió:\n> \n> Hola Ann,\n",
        "Perfecto, el jueves me va bien.",
    ),
    (
        "apple mail macos",
        "Thanks Mike, I'll take a look and come back to you.\n\nAnn\n\n"
        f"> On 3 Mar {Y}, at 10:15, Mike Rowe <mike@acme.example> wrote:\n> \n" + ORIGINAL_EN,
        "Thanks Mike, I'll take a look and come back to you.\n\nAnn",
    ),
    (
        "apple mail macos, attribution unquoted",
        "Interesting, tell me more.\n\n"
        f"On 3 Mar {Y}, at 10:15, Mike Rowe <mike@acme.example> wrote:\n\n" + ORIGINAL_EN,
        "Interesting, tell me more.",
    ),
    (
        "apple mail forward",
        "Bob, see below. Can you handle this?\n\nBegin forwarded message:\n\n"
        "From: Mike Rowe <mike@acme.example>\nSubject: Quick question\n"
        f"Date: 3 March {Y} at 10:15:00 CET\nTo: Ann Lee <ann@example.org>\n\n" + PLAIN_EN,
        "Bob, see below. Can you handle this?",
    ),
    (
        "apple mail forward de",
        "Bob, bitte übernehmen.\n\nAnfang der weitergeleiteten Nachricht:\n\n"
        "Von: Mike Rowe <mike@acme.example>\nBetreff: Kurze Frage\n"
        f"Datum: 3. März {Y} um 10:15:00 MEZ\nAn: Ann Lee <ann@example.de>\n\n" + PLAIN_DE,
        "Bob, bitte übernehmen.",
    ),
    (
        "thunderbird en, bottom-posted, signature",
        "On 3/3/26 10:15, Mike Rowe wrote:\n"
        + ORIGINAL_EN
        + "\nYes, Wednesday morning is fine.\n\n"
        "Ann\n\n-- \nAnn Lee\nHead of Operations, Example Org\n+1 555 0100\n",
        "Yes, Wednesday morning is fine.\n\nAnn",
    ),
    (
        "thunderbird de, bottom-posted",
        "Am 03.03.26 um 10:15 schrieb Mike Rowe:\n> Hallo Frau Lee,\n>\n"
        "> hätten Sie nächste Woche 15 Minuten Zeit?\n\nHallo Herr Rowe,\n\nja, Mittwoch passt.\n\n"
        "Grüße\nAnn\n\n-- \nAnn Lee\n",
        "Hallo Herr Rowe,\n\nja, Mittwoch passt.\n\nGrüße\nAnn",
    ),
    (
        "thunderbird fr, top-posted",
        "Bonjour Mike,\n\nMerci, je regarde ça.\n\n"
        f"Le 03/03/{Y} à 10:15, Mike Rowe a écrit :\n> Bonjour Ann,\n>\n"
        "> Auriez-vous 15 minutes la semaine prochaine ?\n",
        "Bonjour Mike,\n\nMerci, je regarde ça.",
    ),
    (
        "thunderbird es, bottom-posted",
        "El 3/3/26 a las 10:15, Mike Rowe escribió:\n> Hola Ann,\n>\n"
        "> ¿Tendrías 15 minutos la semana que viene?\n\nHola Mike, sí, me interesa.\n",
        "Hola Mike, sí, me interesa.",
    ),
    (
        "thunderbird old attribution",
        "Mike Rowe wrote:\n> Would you have 15 minutes next week?\n\nNo thanks.\n",
        "No thanks.",
    ),
    (
        "inline answers",
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n"
        "> Do you use a CRM today?\n\nYes, Salesforce.\n\n> How many reps?\n\nAbout 12.\n",
        "Yes, Salesforce.\n\nAbout 12.",
    ),
    (
        "gmx",
        "Hallo Herr Rowe,\n\nbitte rufen Sie mich an.\n\nViele Grüße\nAnn Lee\n\n"
        f'Gesendet: Dienstag, 03. März {Y} um 10:15 Uhr\nVon: "Mike Rowe" <mike@acme.example>\n'
        "An: ann@example.de\nBetreff: Kurze Frage\n\n" + PLAIN_DE,
        "Hallo Herr Rowe,\n\nbitte rufen Sie mich an.\n\nViele Grüße\nAnn Lee",
    ),
    (
        "web.de app",
        "Ja gerne.\n\nGesendet mit der WEB.DE Mail App\n\n"
        "Am 03.03.26, 10:15 schrieb Mike Rowe <mike@acme.example>:\n> Hallo Frau Lee,\n",
        "Ja gerne.",
    ),
    (
        "samsung de",
        "Ok.\n\n\nVon meinem Samsung Galaxy Smartphone gesendet.\n\n\n"
        "-------- Ursprüngliche Nachricht --------\nVon: Mike Rowe <mike@acme.example> \n"
        "Datum: 03.03.26 10:15 (GMT+01:00) \nAn: Ann Lee <ann@example.de> \n"
        "Betreff: Kurze Frage \n\n" + PLAIN_DE,
        "Ok.",
    ),
    (
        "samsung fr",
        "Oui.\n\nEnvoyé depuis mon appareil Galaxy\n\n-------- Message d'origine --------\n"
        f"De : Mike Rowe <mike@acme.example> \nDate : 03/03/{Y} 10:15 (GMT+01:00) \n"
        "À : Ann Lee <ann@example.fr> \nObjet : Petite question \n\n" + PLAIN_FR,
        "Oui.",
    ),
    (
        "orange webmail",
        "Bonjour,\n\nJe vous rappelle demain.\n\nCordialement\n\n> Message du 03/03/26 10:15\n"
        '> De : "Mike Rowe" <mike@acme.example>\n> A : ann@orange.example\n> Copie à : \n'
        "> Objet : Petite question\n>\n> Bonjour Ann,\n",
        "Bonjour,\n\nJe vous rappelle demain.\n\nCordialement",
    ),
    (
        "free zimbra",
        "Bonjour Mike,\n\nC'est noté.\n\n----- Mail original -----\n"
        'De: "Mike Rowe" <mike@acme.example>\nÀ: "Ann Lee" <ann@free.example>\n'
        f"Envoyé: Mardi 3 Mars {Y} 10:15:00\nObjet: Petite question\n\n" + PLAIN_FR,
        "Bonjour Mike,\n\nC'est noté.",
    ),
    (
        "yahoo",
        "Thanks, not interested at this time.\n\n"
        f"    On Tuesday, March 3, {Y} at 10:15:00 AM EST, Mike Rowe <mike@acme.example> wrote:  \n"
        " \n Hi Ann,\n\nWould you have 15 minutes next week?\n",
        "Thanks, not interested at this time.",
    ),
    (
        "signature before quote",
        "Sounds great, let's talk Friday.\n\n-- \nAnn Lee | VP Ops\nExample Org\n\n"
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n" + ORIGINAL_EN,
        "Sounds great, let's talk Friday.",
    ),
    (
        "no quote",
        "Please call me at 555-0100 tomorrow morning.\n",
        "Please call me at 555-0100 tomorrow morning.",
    ),
    (
        "someone wrote, not a quote",
        "My colleague wrote:\nWe need pricing for 20 seats.\n\nCan you send it?\n",
        "My colleague wrote:\nWe need pricing for 20 seats.\n\nCan you send it?",
    ),
]


@pytest.mark.parametrize(
    ("text", "own"), [(t, o) for _, t, o in REPLIES], ids=[n for n, _, _ in REPLIES]
)
def test_reply_text_of_real_clients(text: str, own: str) -> None:
    assert mailtext.reply_text(text) == own


@pytest.mark.parametrize(
    "text",
    [
        "Sent from my desk, which is easier than my phone.\n\nThanks",
        "On your side, what would help:\n\n- pricing\n- a demo",
        "On Friday I tried it and it did not work.\n\nCan you call me?",
        "Here is a fix -- this is not a signature.\n\nAnn",
        "From: our side everything is fine.\nThe price is the issue.",
        "De : notre côté, tout va bien.",
    ],
)
def test_reply_text_keeps_text_that_only_looks_like_quoting(text: str) -> None:
    assert mailtext.reply_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        f"From: Mike Rowe <mike@acme.example>\nSent: Tuesday, March 3, {Y} 10:15 AM\n"
        "To: Ann Lee\nSubject: Quick question\n\n" + PLAIN_EN,
        "-----Original Message-----\nFrom: Mike Rowe\nSent: Tuesday\n\n" + PLAIN_EN,
        f"\n\nSent from my iPhone\n\n> On Mar 3, {Y}, at 10:15, Mike Rowe wrote:\n" + ORIGINAL_EN,
    ],
)
def test_a_reply_with_nothing_written_is_empty(text: str) -> None:
    assert mailtext.reply_text(text) == ""


def test_reply_text_tidies_whitespace() -> None:
    text = "\n\n  Hi   Mike,\u00a0\n\n\n\nYes,\u200b works.  \r\n\r\n"
    assert mailtext.reply_text(text) == "Hi Mike,\n\nYes, works."


def test_reply_text_is_fast_on_a_huge_body() -> None:
    # 3,000 lines that each look like the start of an attribution and never are one.
    lines = ["On a line that begins like an attribution, and goes on " + "x" * 300 + ":"] * 3000
    started = time.perf_counter()
    reply = mailtext.reply_text("Yes.\n" + "\n".join(lines))
    assert time.perf_counter() - started < 2
    assert reply.startswith("Yes.\nOn a line")
    assert len(reply.splitlines()) == 3001


# --- body text ------------------------------------------------------------------------------

ALTERNATIVE = HEAD + (
    'Content-Type: multipart/alternative; boundary="b1"\n\n'
    "--b1\nContent-Type: text/plain; charset=utf-8\n\nThursday works.\n\n"
    "> Would you have 15 minutes next week?\n"
    "--b1\nContent-Type: text/html; charset=utf-8\n\n<p>HTML version</p>\n--b1--\n"
)

GMAIL_HTML = (
    '<div dir="ltr">Thursday works.<br><br>Ann</div><br><div class="gmail_quote">'
    f'<div dir="ltr" class="gmail_attr">On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe &lt;'
    '<a href="mailto:mike@acme.example">mike@acme.example</a>&gt; wrote:<br></div>'
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">'
    '<div dir="ltr">Hi Ann,<div><br></div><div>Would you have 15 minutes next week?</div>'
    "</div></blockquote></div>"
)

OUTLOOK_HTML = (
    "<html><head><style>p.MsoNormal {margin:0cm; font-family:Calibri}</style></head><body>"
    '<div class="WordSection1"><p class="MsoNormal">Hallo Herr Rowe,<o:p></o:p></p>'
    '<p class="MsoNormal"><o:p>&nbsp;</o:p></p><p class="MsoNormal">gerne, rufen Sie mich an'
    " &amp; wir sprechen.<o:p></o:p></p>"
    '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
    '<font face="Calibri"><b>Von:</b> Mike Rowe &lt;mike@acme.example&gt;<br>'
    f"<b>Gesendet:</b> Dienstag, 3. März {Y} 10:15<br><b>An:</b> Ann Lee<br>"
    "<b>Betreff:</b> Kurze Frage</font></div><div><p>Hallo Frau Lee, hätten Sie Zeit?</p></div>"
    "<script>alert('x')</script></body></html>"
)

APPLE_HTML = (
    '<html><body dir="auto"><div>Sure, Thursday works.</div><div><br></div>'
    '<div>Sent from my iPhone</div><div><br><blockquote type="cite">'
    f"On Mar 3, {Y}, at 10:15, Mike Rowe &lt;mike@acme.example&gt; wrote:<br><br></blockquote>"
    '</div><blockquote type="cite"><div>Hi Ann,<blockquote type="cite">older</blockquote>'
    "</div></blockquote></body></html>"
)


def html_message(html: str, charset: str = "utf-8") -> EmailMessage:
    return parse(crlf(HEAD + f"Content-Type: text/html; charset={charset}\n\n" + html))


def test_alternative_prefers_the_plain_part() -> None:
    msg = parse(crlf(ALTERNATIVE))
    assert mailtext.body_text(msg) == "Thursday works.\n\n> Would you have 15 minutes next week?"


def test_html_only_gmail_reply_marks_the_quote() -> None:
    text = mailtext.body_text(html_message(GMAIL_HTML))
    assert text == (
        f"Thursday works.\n\nAnn\n\nOn Tue, Mar 3, {Y} at 10:15 AM Mike Rowe "
        "<mike@acme.example> wrote:\n> Hi Ann,\n>\n> Would you have 15 minutes next week?"
    )
    assert mailtext.reply_text(text) == "Thursday works.\n\nAnn"


def test_html_only_outlook_reply() -> None:
    text = mailtext.body_text(html_message(OUTLOOK_HTML))
    assert "MsoNormal" not in text
    assert "alert" not in text
    assert mailtext.reply_text(text) == (
        "Hallo Herr Rowe,\ngerne, rufen Sie mich an & wir sprechen."
    )


def test_html_only_apple_mail_reply_nests_quotes() -> None:
    text = mailtext.body_text(html_message(APPLE_HTML))
    assert "> > older" in text
    assert mailtext.reply_text(text) == "Sure, Thursday works."


def test_html_without_a_declared_charset_and_broken_markup() -> None:
    html = "<p>Caf\u00e9 <b>ouvert<p>Deux<br/>lignes</td></table><!-- x --><div"
    text = mailtext.body_text(html_message(html, charset="x-none"))
    assert text.splitlines()[:3] == ["Café ouvert", "Deux", "lignes"]


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [
        ("us-ascii", "Grüße €".encode(), "Grüße €"),  # UTF-8 labelled ASCII
        ("utf-8", "Grüße".encode("latin-1"), "Grüße"),  # Latin-1 labelled UTF-8
        ("windows-1252", "Grüße €".encode("cp1252"), "Grüße €"),
        ("iso-8859-15", "Grüße €".encode("iso-8859-15"), "Grüße €"),
        ("x-mac-unknown", "Grüße".encode(), "Grüße"),  # no such codec
        ("base64", "Grüße".encode(), "Grüße"),  # a codec, but not a text encoding
        ('"UTF-8"', "Grüße".encode(), "Grüße"),
        ("utf-8", "Grüße aus Köln".encode() + b"\xff", "Grüße aus Köln\ufffd"),
    ],
)
def test_charsets_that_are_wrong_or_unknown(charset: str, data: bytes, text: str) -> None:
    head = (
        HEAD + f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n"
    )
    msg = parse(crlf(head) + data)
    assert mailtext.body_text(msg) == text


def test_base64_and_quoted_printable_parts() -> None:
    encoded = base64.encodebytes("Grüße,\nAnn".encode()).decode()
    b64 = HEAD + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    assert mailtext.body_text(parse(crlf(b64 + encoded))) == "Grüße,\nAnn"
    # stray characters and a missing padding, as broken gateways leave them
    assert mailtext.body_text(parse(crlf(b64 + "R3LD!!vMOf*ZQ"))) == "Grüße"
    qp = (
        HEAD
        + "Content-Type: text/plain; charset=iso-8859-1\n"
        + "Content-Transfer-Encoding: quoted-printable\n\n"
    )
    assert mailtext.body_text(
        parse(crlf(qp + "Gr=FC=DFe aus K=F6ln, ein sehr langer=\n Satz"))
    ) == ("Grüße aus Köln, ein sehr langer Satz")


def test_format_flowed_lines_are_joined() -> None:
    head = HEAD + "Content-Type: text/plain; charset=utf-8; format=flowed\n\n"
    body = (
        "Yes, Thursday works, but could we make it \nafter lunch?\n\n"
        "> Would you have \n> 15 minutes?\n-- \nAnn\n"
    )
    assert mailtext.body_text(parse(crlf(head + body))) == (
        "Yes, Thursday works, but could we make it after lunch?\n\n"
        "> Would you have 15 minutes?\n-- \nAnn\n"
    )


def test_attachments_are_skipped_and_inline_texts_joined() -> None:
    raw = HEAD + (
        'Content-Type: multipart/mixed; boundary="m"\n\n'
        "--m\nContent-Type: text/plain; charset=utf-8\n\nSee the photo:\n"
        "--m\nContent-Type: image/jpeg\nContent-Disposition: inline\n"
        "Content-Transfer-Encoding: base64\n\n/9j/4AAQ\n"
        "--m\nContent-Type: text/plain; charset=utf-8\n\nNice, right?\n"
        '--m\nContent-Type: text/plain; name="notes.txt"\n'
        'Content-Disposition: attachment; filename="notes.txt"\n\n'
        "secret attachment text\n--m--\n"
    )
    assert mailtext.body_text(parse(crlf(raw))) == "See the photo:\n\nNice, right?"


INNER = (
    "From: Bob <bob@example.org>\nSubject: Inner\nContent-Type: text/plain; charset=utf-8\n\n"
    "Inner text\n"
)


def test_an_attached_message_is_not_the_body() -> None:
    raw = HEAD + (
        'Content-Type: multipart/mixed; boundary="m"\n\n'
        "--m\nContent-Type: text/plain; charset=utf-8\n\nSee the forwarded mail.\n"
        "--m\nContent-Type: message/rfc822\n\n" + INNER + "--m--\n"
    )
    assert mailtext.body_text(parse(crlf(raw))) == "See the forwarded mail."


def test_a_message_that_is_only_an_attached_message_gives_its_text() -> None:
    raw = HEAD + (
        'Content-Type: multipart/mixed; boundary="m"\n\n'
        "--m\nContent-Type: message/rfc822\n\n" + INNER + "--m--\n"
    )
    assert mailtext.body_text(parse(crlf(raw))) == "Inner text"


def test_body_text_decodes_no_more_than_the_limit() -> None:
    big = base64.encodebytes(("Grüße " * 1_000_000).encode()).decode()  # 7 MB of text
    raw = (
        HEAD
        + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + big
    )
    msg = parse(crlf(raw))
    started = time.perf_counter()
    text = mailtext.body_text(msg, limit=1000)
    assert time.perf_counter() - started < 0.5
    assert len(text) == 1000
    assert text.startswith("Grüße Grüße")


def test_huge_html_is_cut_too() -> None:
    msg = html_message("<div>" + "<p>Zeile <b>fett</b></p>" * 200_000 + "</div>")
    text = mailtext.body_text(msg, limit=5000)
    assert len(text) <= 5000
    assert text.startswith("Zeile fett\nZeile fett\n")


# --- first lines, for the rep's digest -----------------------------------------------------


def test_first_lines() -> None:
    reply = "Hi Mike,\n\n  Thursday   works.\n\nCan you send the deck?\nAnd the price list?\n"
    assert mailtext.first_lines(reply) == "Hi Mike,\nThursday works.\nCan you send the deck?"
    assert mailtext.first_lines(reply, lines=1) == "Hi Mike,"
    assert mailtext.first_lines("x" * 300, width=10) == "xxxxxxxxx…"
    assert mailtext.first_lines("") == ""


# --- "please stop" --------------------------------------------------------------------------

STOP = [
    "unsubscribe",
    "Unsubscribe",
    "STOP",
    "Stop.",
    "Remove me please.",
    "Please remove me from your list.",
    "Please take me off your mailing list.",
    "Not interested please remove me from your list",
    "Hi Mike,\n\nPlease unsubscribe me.\n\nThanks",
    "Please unsubscribe",
    "I'd like to unsubscribe from these emails.",
    "Stop emailing me.",
    "Do not contact me again.",
    "No more emails please.",
    "Abmelden",
    "Bitte keine E-Mails mehr.",
    "Bitte nehmen Sie mich aus Ihrem Verteiler.",
    "Hallo Herr Rowe,\nbitte tragen Sie mich aus Ihrer Liste aus.",
    "Ich möchte keine weiteren Nachrichten mehr erhalten.",
    "Désinscription",
    "Merci de me désinscrire.",
    "Je souhaite ne plus recevoir vos e-mails.",
    "Bonjour,\nRetirez-moi de votre liste svp.",
    "Merci de ne plus m'envoyer de messages : ne m'envoyez plus rien.",
    "Baja",
    "Por favor, darme de baja.",
    "No me envíen más correos.",
    "Hola,\nQuítenme de su lista, gracias.",
    "No quiero recibir más correos.",
]

NOT_STOP = [
    "Don't stop, this is great",
    "Stop by our booth on Friday?",
    "Please remove Bob from the cc and add me",
    "I can't unsubscribe from my other vendor's list, can you help",
    "Please don't remove me from your list, I like the updates.",
    "Why did you unsubscribe me?",
    "Thanks! Quick question first.\nPlease remove me from your list.",  # not the first line
    "Unsubscribing from newsletters is hard. " * 6 + "remove me from your list",  # too long
    "Let's stop the back and forth and meet on Tuesday.",
    "Bitte nicht abmelden, wir sind interessiert.",
    "Können wir das Abmelden der Geräte besprechen?",
    "Je ne peux pas me désinscrire de l'autre liste, pouvez-vous aider ?",
    "¿Cómo doy de baja un usuario en su sistema?",
    "",
]


@pytest.mark.parametrize("reply", STOP)
def test_asks_to_stop(reply: str) -> None:
    assert mailtext.asks_to_stop(reply)


@pytest.mark.parametrize("reply", NOT_STOP)
def test_does_not_ask_to_stop(reply: str) -> None:
    assert not mailtext.asks_to_stop(reply)


def test_an_unsubscribe_click_through_reply_text() -> None:
    # The List-Unsubscribe mailto arrives with subject "unsubscribe" and often an empty body;
    # a reply saying only "unsubscribe" over the quote is a stop too.
    text = (
        f"unsubscribe\n\nOn Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:\n> Hi"
    )
    assert mailtext.asks_to_stop(mailtext.reply_text(text))


# --- hostile input never raises -------------------------------------------------------------

SAMPLE = crlf(ALTERNATIVE)
BROKEN_HEAD = (
    "Subject: =?utf-8?b?=?=\nFrom: =?x?q?=\nTo: ,,,@@\nContent-Type: multipart/mixed; boundary=\n"
    "Content-Transfer-Encoding: base64\n\n"
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=800), st.integers(0, len(SAMPLE)), st.booleans())
def test_body_text_never_raises(noise: bytes, at: int, broken_head: bool) -> None:
    prefix = crlf(BROKEN_HEAD) if broken_head else b""
    for data in (noise, prefix + SAMPLE[:at] + noise + SAMPLE[at:]):
        msg = parse(data)
        text = mailtext.body_text(msg, limit=500)
        assert isinstance(text, str)
        assert len(text) <= 500
        for name in ("subject", "from", "content-type", "to"):
            assert isinstance(reading.header(msg, name), str)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_text_functions_never_raise(text: str) -> None:
    assert isinstance(mailtext.asks_to_stop(text), bool)
    assert isinstance(mailtext.first_lines(text), str)
    assert isinstance(mailtext.html_to_text(text), str)


LINES = st.sampled_from(
    [
        "Hi Mike,",
        "Yes, Thursday works.",
        "",
        "> quoted",
        ">",
        "-- ",
        "Sent from my iPhone",
        f"On Tue, Mar 3, {Y} at 10:15 AM Mike Rowe <mike@acme.example> wrote:",
        f"Am 03.03.{Y} um 10:15 schrieb Mike Rowe:",
        "-----Original Message-----",
        "From: Mike Rowe",
        "Sent: Tuesday",
        "To: Ann",
        "Subject: x",
        "Ann",
        "________________________________",
        "  indented  text\u00a0here",
        "unsubscribe",
    ]
)


INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=25))
def test_reply_text_only_keeps_lines_of_its_input(lines: list[str]) -> None:
    text = "\n".join(lines)
    reply = mailtext.reply_text(text)
    plain = " ".join(text.translate(INVISIBLE).split())
    for line in reply.splitlines():
        assert " ".join(line.split()) in plain
        assert not line.startswith(">")
