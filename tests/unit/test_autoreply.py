"""Automatic replies and out-of-office notices: headers, subjects, bodies, return dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import dates
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.mail import autoreply, mailtext

# The notices below are real wordings with their dates filled in, and they name weekdays
# ("returning Monday 7 December"): they are read in a year ahead in which 27 November is a
# Friday, as it was when they were written, so that every weekday they name is still true.
# The year is computed; the days and months are the wording's own (a calendar fact).
Y = dates.year_when(11, 27, dates.FRIDAY)


def on(month: int, day: int, *, years: int = 0) -> date:
    """`day` `month` of the notices' year (`years` later)."""
    return date(Y + years, month, day)


RECEIVED = on(11, 27)  # a Friday
NEXT_MONDAY = on(11, 30)


def message(body: str, subject: str = "Re: Quick question", **headers: str) -> EmailMessage:
    """A message as the IMAP watcher gets it: bytes parsed with policy.default."""
    lines = [
        "From: Ann Lee <ann@example.org>",
        "To: Mike Rowe <mike@acme.example>",
        f"Subject: {subject}",
        f"Date: Fri, 27 Nov {Y} 10:15:00 +0100",
        "Message-ID: <reply-1@example.org>",
        "In-Reply-To: <dripd.7f3a9c.e12.intro.0@acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def detect(msg: EmailMessage) -> autoreply.AutoReply | None:
    return autoreply.detect_auto_reply(msg, mailtext.body_text(msg), received=RECEIVED)


# --- return dates, as real notices state them ------------------------------------------

OUT_OF_OFFICE = [
    # English
    (
        "Thank you for your email. I am currently out of the office with limited access to "
        f"email and will return on Monday, 7 December {Y}. For urgent matters please contact "
        "Sam Ortiz at sam@example.org.",
        on(12, 7),
    ),
    ("Hi, I'm out of office until December 3rd. I'll respond when I'm back.", on(12, 3)),
    (
        "I am on annual leave from 30 November to 4 December inclusive, returning Monday "
        "7 December.",
        on(12, 7),
    ),
    (
        f"I'm currently on parental leave and will be back in the office on 1 March {Y + 1}.",
        on(3, 1, years=1),
    ),
    (
        "I am out of the office through Friday, December 4 with no access to email.",
        on(12, 5),
    ),
    ("Out of office: I'm traveling and will be back on 12/3. Expect delays.", on(12, 3)),
    ("I am on leave until 3/12 and will reply on my return.", on(12, 3)),
    ("I will be out of the office until Monday. I will respond upon my return.", NEXT_MONDAY),
    (f"I'm away from my desk until 3 Dec {Y}.", on(12, 3)),
    (
        "Thanks for your message. I'm on vacation December 1-4 and will have limited access "
        "to email.",
        on(12, 4),
    ),
    (f"I am currently out of the office. I will be returning on {Y}-12-08.", on(12, 8)),
    (
        "I'm out of the office from Monday, November 30 through Wednesday, December 2.\n"
        "I'll have limited access to email.",
        on(12, 3),
    ),
    (
        "I am out of the office and will be back on\nTuesday, December 8th.\n\nKind regards,\nAnn",
        on(12, 8),
    ),
    ("I'm out of the office. Back tomorrow.", on(11, 28)),
    # German
    (
        f"Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 4.12.{Y} nicht im Büro. "
        "Ab dem 7.12. bin ich wieder erreichbar. In dringenden Fällen wenden Sie sich bitte "
        "an Sam Ortiz.",
        on(12, 7),
    ),
    (
        "Ich bin vom 30.11. bis 04.12. im Urlaub und ab dem 07.12. wieder im Büro.",
        on(12, 7),
    ),
    (
        "Guten Tag, ich bin bis zum 3. Dezember außer Haus. Ihre E-Mail wird nicht weitergeleitet.",
        on(12, 3),
    ),
    (f"Ich befinde mich bis einschließlich Freitag, 04.12.{Y} im Urlaub.", on(12, 5)),
    ("Ich bin ab dem 3. Dezember wieder im Büro.", on(12, 3)),
    ("Ich bin zurück am 03.12.", on(12, 3)),
    (
        f"Ich bin derzeit in Elternzeit und voraussichtlich ab 1. März {Y + 1} wieder erreichbar.",
        on(3, 1, years=1),
    ),
    ("Ich bin bis Montag nicht erreichbar.", NEXT_MONDAY),
    ("Abwesend bis 2.12. – ab 3.12. bin ich wieder da.", on(12, 3)),
    ("Ich bin bis 2.12. nicht im Büro.", on(12, 2)),
    # French
    (
        "Bonjour, je suis absente du bureau jusqu'au 4 décembre inclus. Je serai de retour "
        "le lundi 7 décembre.",
        on(12, 7),
    ),
    (
        f"Je suis actuellement en congés et serai de retour le 3 décembre {Y}.",
        on(12, 3),
    ),
    ("Absent jusqu’au 2 décembre inclus.", on(12, 3)),
    (f"Je suis en congé maternité jusqu'au 1er mars {Y + 1}.", on(3, 1, years=1)),
    (
        "Je suis en déplacement du 30/11 au 04/12. Je consulterai mes e-mails à mon retour.",
        on(12, 4),
    ),
    ("Merci pour votre message. Je suis absent, de retour lundi.", NEXT_MONDAY),
    ("À partir du 3 décembre, je serai de retour au bureau.", on(12, 3)),
    # Spanish
    (
        "Gracias por su mensaje. Estaré fuera de la oficina hasta el 4 de diciembre. "
        "Regreso el lunes 7 de diciembre.",
        on(12, 7),
    ),
    ("Me encuentro de vacaciones. Regreso el 3 de diciembre.", on(12, 3)),
    ("Estaré de vuelta el lunes 7.", on(12, 7)),
    (
        "Estoy de vacaciones del 30 de noviembre al 4 de diciembre, ambos inclusive.",
        on(12, 5),
    ),
    ("Estaré ausente hasta el 2 de diciembre incluido.", on(12, 3)),
    (f"Fuera de la oficina hasta el 03/12/{Y}.", on(12, 3)),
    ("A partir del 3 de diciembre estaré de vuelta en la oficina.", on(12, 3)),
]


# Wordings of published out-of-office templates (exclaimer, indeed, outsales, Orange Pro,
# OQLF, vorlage-formulare, mailfence, languagetool, quillbot), dates filled in; held out
# while the rules were written (19 of 21 before "compris" and "a mi vuelta" were added).
TEMPLATES = [
    (
        "Thank you for your email. I'm currently out of the office until December 3 and will "
        "respond as soon as possible upon my return.",
        on(12, 3),
    ),
    ("I'm on leave until December 3. Your email has been forwarded.", on(12, 3)),
    (
        "I am currently out of the office and will return on December 7. I will have limited "
        "access to email during this time.",
        on(12, 7),
    ),
    (
        "I am out of the office from November 30 to December 4 with no access to email.",
        on(12, 4),
    ),
    (
        "I will be out of the office starting Friday, November 27, and will return on Monday, "
        "December 7.",
        on(12, 7),
    ),
    ("Email Error 408 - The recipient is not around... until 4th of December.", on(12, 4)),
    (
        "Ich bin derzeit abwesend und nicht in der Lage, Ihre E-Mail sofort zu beantworten. Ich "
        "werde am 7. Dezember wieder im Büro sein.",
        on(12, 7),
    ),
    ("Ich bin vom 30.11. bis 4.12. nicht im Büro.", on(12, 4)),
    (
        "Bonjour, je suis absent(e) du bureau du 30 novembre au 4 décembre compris et je n'aurai "
        "pas accès à ma messagerie pendant cette période.",
        on(12, 5),
    ),
    ("Je suis en vacances du 1er au 4 décembre.", on(12, 4)),
    ("Partez en vacances, et on se parlera à mon retour le 07/12.", on(12, 7)),
    (
        "No estaré disponible desde el 30 de noviembre hasta el 4 de diciembre por vacaciones.",
        on(12, 4),
    ),
    (
        "Estoy de vacaciones y sin acceso al correo electrónico. Trataré de contestarte lo antes "
        "posible a mi vuelta a partir del día 7 de diciembre.",
        on(12, 7),
    ),
    (
        "Me encuentro ausente de la oficina desde el 30 de noviembre hasta el 4 de diciembre por "
        "motivos profesionales.",
        on(12, 4),
    ),
]


@pytest.mark.parametrize(("text", "back"), TEMPLATES)
def test_return_date_of_published_templates(text: str, back: date) -> None:
    assert autoreply.find_return_date(text, received=RECEIVED) == back


@pytest.mark.parametrize(("text", "back"), OUT_OF_OFFICE)
def test_return_date_of_real_notices(text: str, back: date) -> None:
    assert autoreply.find_return_date(text, received=RECEIVED) == back


@pytest.mark.parametrize(("text", "back"), OUT_OF_OFFICE)
def test_a_notice_with_an_automatic_subject_pauses_until_its_date(text: str, back: date) -> None:
    found = detect(message(text, subject="Automatic reply: Quick question"))
    assert found is not None
    assert found.out_of_office
    assert found.return_date == back


NO_DATE = [
    "I'm out of the office with no access to email. I will get back to you as soon as possible.",
    "I am out of office on 3 December.",  # one day away, no return stated
    "Ich bin im Urlaub. Ihre Nachricht wird nicht weitergeleitet.",
    "I'll be back in 1.5 weeks.",
    "Je suis absent pour 2 semaines.",
    "Je ne suis pas au bureau jusqu'à la semaine prochaine.",
    "Vielen Dank für Ihre E-Mail, ich bin leider nicht im Büro.",
    "I will be out until further notice.",
]


@pytest.mark.parametrize("text", NO_DATE)
def test_no_return_date_when_none_is_stated(text: str) -> None:
    assert autoreply.find_return_date(text, received=RECEIVED) is None


def test_a_stale_notice_gives_no_date_rather_than_next_year() -> None:
    # An out-of-office left on after the person came back (20 November, a week ago).
    assert autoreply.find_return_date("I'm out until Nov 20.", received=RECEIVED) is None
    assert autoreply.find_return_date("Zurück am 20.11.", received=RECEIVED) is None


def test_a_date_without_a_year_after_new_year() -> None:
    received = on(12, 21)
    assert autoreply.find_return_date("Back on 4 January.", received=received) == on(1, 4, years=1)
    assert autoreply.find_return_date("Zurück am 04.01.", received=received) == on(1, 4, years=1)


def test_dates_in_the_past_or_too_far_ahead_give_nothing() -> None:
    assert autoreply.find_return_date(f"Back on 3 December {Y - 1}.", received=RECEIVED) is None
    assert autoreply.find_return_date(f"Back on 3 December {Y + 2}.", received=RECEIVED) is None


def test_until_is_the_day_named_and_inclusive_is_the_day_after() -> None:
    def back(text: str) -> date | None:
        return autoreply.find_return_date(text, received=RECEIVED)

    assert back("I'm out until 3 December.") == on(12, 3)
    assert back("I'm out until 3 December inclusive.") == on(12, 4)
    assert back("I'm out through 3 December.") == on(12, 4)
    assert back("Ich bin bis 3.12. nicht da.") == on(12, 3)
    assert back("Ich bin bis einschließlich 3.12. nicht da.") == on(12, 4)
    assert back("Absent jusqu'au 3 décembre.") == on(12, 3)
    assert back("Absent jusqu'au 3 décembre inclus.") == on(12, 4)
    assert back("Ausente hasta el 3 de diciembre.") == on(12, 3)
    assert back("Ausente hasta el 3 de diciembre inclusive.") == on(12, 4)


def test_slash_dates_read_day_first_outside_english() -> None:
    received = on(1, 5)
    # French 02/10 is 2 October, even though 10 February is nearer.
    assert autoreply.find_return_date("De retour le 02/10.", received=received) == on(10, 2)
    # English: the nearer reading, 10 February.
    assert autoreply.find_return_date("Back on 02/10.", received=received) == on(2, 10)
    # Only one reading is a date: 12/25 is 25 December in any language.
    assert autoreply.find_return_date("Retour le 12/25.", received=received) == on(12, 25)


def test_a_weekday_alone_is_the_next_one_after_the_day_received() -> None:
    friday = RECEIVED
    assert autoreply.find_return_date("Back on Friday.", received=friday) == on(12, 4)
    assert autoreply.find_return_date("Zurück am Montag.", received=friday) == NEXT_MONDAY


def test_a_weekday_with_the_date_picks_its_year() -> None:
    # A year ahead in which 16 June is a Tuesday and was a Monday the year before: a notice
    # "back on Monday 16 June" was left on since last summer.
    year = next(
        y
        for y in range(Y, Y + 28)
        if date(y, 6, 16).weekday() == dates.TUESDAY
        and date(y - 1, 6, 16).weekday() == dates.MONDAY
    )
    received = date(year, 2, 1)
    assert autoreply.find_return_date("Back on Monday 16 June.", received=received) is None
    assert autoreply.find_return_date("Back on Tuesday 16 June.", received=received) == date(
        year, 6, 16
    )


def test_an_old_notice_read_on_the_day_it_came() -> None:
    # A real notice, read on the day it was sent: its dates are data, not test time.
    text = (
        "I am away on vacation, Monday May 25 through May 29, 2009. I will be back in the "
        "office on June 1. Please call 562-922-6216 for immediate assistance."
    )
    assert autoreply.find_return_date(text, received=date(2009, 5, 29)) == date(2009, 6, 1)


def test_received_may_be_a_datetime() -> None:
    when = datetime(Y, 11, 27, 23, 5)
    assert autoreply.find_return_date("Back on 3 December.", received=when) == on(12, 3)


# --- what real responders send -----------------------------------------------------------

AWAY = "I am out of the office until 3 December with limited access to email."


def test_gmail_vacation_responder() -> None:
    msg = message(
        AWAY,
        subject="Out of office",
        Auto_Submitted="auto-replied",
        X_Autoreply="yes",
        Precedence="bulk",
    )
    found = detect(msg)
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 3)
    assert "Auto-Submitted: auto-replied" in found.reasons
    assert "X-Autoreply: yes" in found.reasons


def test_microsoft_365_automatic_reply() -> None:
    msg = message(
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum 3. Dezember nicht im Büro.",
        subject="Automatische Antwort: Kurze Frage",
        Auto_Submitted="auto-generated",
        X_Auto_Response_Suppress="All",
        X_MS_Exchange_Inbox_Rules_Loop="ann@example.de",
    )
    found = detect(msg)
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 3)
    assert "subject 'Automatische Antwort: Kurze Frage'" in found.reasons


def test_the_return_date_may_be_in_the_subject() -> None:
    msg = message(
        "Thanks for your message, I'll reply when I'm back.",
        subject="Out of Office: Returning Monday, Dec 7",
        Auto_Submitted="auto-replied",
    )
    found = detect(msg)
    assert found is not None
    assert found.return_date == on(12, 7)


def test_exchange_on_premises_with_only_the_subject() -> None:
    # freescout#513: a real Exchange 2010 notice that kept no automatic header.
    found = detect(message("Ich bin ab dem 7.12. wieder im Büro.", subject="Abwesend: Kurze Frage"))
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 7)


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: Quick question",
        "Out of Office: Quick question",
        "Out of Office AutoReply: Quick question",
        "Automatische Antwort: Kurze Frage",
        "Abwesenheitsnotiz: Kurze Frage",
        "Réponse automatique : Petite question",
        "Absent du bureau : Petite question",
        "Respuesta automática: Una pregunta",
        "Fuera de la oficina: Una pregunta",
    ],
)
def test_machine_made_subjects_alone_mark_an_automatic_reply(subject: str) -> None:
    found = detect(message("Thanks for your message.", subject=subject))
    assert found is not None


@pytest.mark.parametrize(
    ("subject", "words"),
    [
        ("Out of Office", "subject 'Out of Office'"),
        ("Abwesenheitsnotiz", "subject 'Abwesenheitsnotiz'"),
        ("Absence du bureau", "subject 'Absence du bureau'"),
        ("Ann Lee is out of the office.", "subject 'is out of the office'"),
    ],
)
def test_absence_subjects_with_a_header_are_out_of_office(subject: str, words: str) -> None:
    found = detect(
        message("Thanks, I'll read your mail later.", subject, Auto_Submitted="auto-replied")
    )
    assert found is not None
    assert found.out_of_office
    assert found.return_date is None
    assert words in found.reasons


@pytest.mark.parametrize("subject", ["Out of Office", "Abwesenheitsnotiz – Ann Lee", "Urlaub"])
def test_a_subject_that_is_only_an_absence_notice_is_enough(subject: str) -> None:
    found = detect(message("Ich bin bis 3.12. nicht im Büro.", subject))
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 3)


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied (zimbra; vacation)", "Precedence": "bulk"},
        {"Auto_Submitted": 'auto-replied; owner-email="ann@icloud.example"'},
        {"X_Vacation": "yes"},
    ],
)
def test_vacation_headers_are_out_of_office_without_any_phrase(headers: dict[str, str]) -> None:
    found = detect(message("Thanks, I'll read your mail later.", "Re: Quick question", **headers))
    assert found is not None
    assert found.out_of_office


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"X_Autoreply": "ann@mail.example", "Precedence": "bulk"},  # Mail.ru
        {"X_Autorespond": "yes"},
        {"X_Autoresponder": "Will not send another autoreply for 86400 seconds"},
        {"Precedence": "auto_reply"},
        {"X_Precedence": "auto_reply"},
        {"X_Autogenerated": "Reply"},
        {"X_FC_MachineGenerated": "true"},
        {"X_POST_MessageClass": "9; Autoresponder"},
        {"Delivered_To": "Autoresponder"},
        {"X_MS_Exchange_Generated_Message_Source": "Mailbox Rules Agent"},
        {"X_Mailer": "vacation 1.2"},
        {"Return_Path": "<>"},
    ],
)
def test_automatic_headers(headers: dict[str, str]) -> None:
    found = detect(message("We have received your message.", "Re: Quick question", **headers))
    assert found is not None
    assert not found.out_of_office  # automatic, but nothing says the person is away


def test_a_read_receipt_is_automatic_not_a_reply() -> None:
    raw = (
        "From: Ann Lee <ann@example.org>\r\nTo: Mike Rowe <mike@acme.example>\r\n"
        "Subject: Read: Quick question\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
        '\tboundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        "Your message was displayed.\r\n--b\r\n"
        "Content-Type: message/disposition-notification\r\n\r\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\r\n--b--\r\n"
    )
    msg = message_from_bytes(raw.encode(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    found = detect(msg)
    assert found is not None
    assert not found.out_of_office
    assert "Content-Type: multipart/report (disposition-notification)" in found.reasons


def test_a_ticket_acknowledgement_is_automatic_but_not_an_absence() -> None:
    msg = message(
        "Thank you for contacting Example Support. Your request #4711 has been received.",
        subject="[#4711] Re: Quick question",
        Auto_Submitted="auto-replied",
    )
    found = detect(msg)
    assert found == autoreply.AutoReply(
        out_of_office=False, return_date=None, reasons=("Auto-Submitted: auto-replied",)
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Precedence": "bulk"},
        {"Precedence": "list"},
        {"List_Id": "<news.example.org>"},
        {"List_Unsubscribe": "<mailto:leave@example.org>"},
    ],
)
def test_bulk_mail_is_automatic_never_an_absence(headers: dict[str, str]) -> None:
    found = detect(message("Our offices are closed until 3 December.", "Newsletter", **headers))
    assert found is not None
    assert not found.out_of_office
    assert found.return_date is None


def test_the_body_declaring_itself_automatic_is_enough() -> None:
    found = detect(message("This is an automatic reply. I am on leave until 3 December."))
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 3)


HUMAN = [
    "I was out of office last week, sorry for the late reply. Yes, let's talk on Thursday.",
    "Thanks Mike, I'm back from vacation now. Send me the proposal.",
    "I'm out of office until Dec 3, can we talk after that?",
    "Ich war im Urlaub, daher erst jetzt meine Antwort. Gerne nächste Woche.",
    "Ich bin bis 3.12. im Urlaub, danach gerne.",
    "Je suis de retour de congés, on peut en parler lundi ?",
    "Estuve de vacaciones, perdón por la demora. Hablamos el lunes.",
    "Stop by our booth on Friday?",
]


@pytest.mark.parametrize("body", HUMAN)
def test_a_person_mentioning_an_absence_is_not_an_automatic_reply(body: str) -> None:
    assert detect(message(body)) is None


@pytest.mark.parametrize(
    "headers",
    [
        # Outlook puts this on ordinary mail too (discourse#21367, glpi#2170).
        {"X_Auto_Response_Suppress": "All"},
        {"X_Auto_Response_Suppress": "DR, RN, NRN, OOF, AutoReply"},
        {"Auto_Submitted": "no"},
        {"X_Autoreply": "no"},
    ],
)
def test_headers_that_do_not_make_a_reply_automatic(headers: dict[str, str]) -> None:
    assert detect(message("Thursday works for me.", "RE: Quick question", **headers)) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Planning your vacation rental?",
        f"AW: Urlaubsplanung {Y + 1}",
        "Auto: Angebot Firmenwagen",
        "Vacation rental inquiry",
        "Out of office next week, can we talk before?",
        "Abwesenheit Team Müller im Dezember",
        "Absence de Paul lundi",
    ],
)
def test_human_subjects_that_mention_absence_words(subject: str) -> None:
    assert detect(message("Yes, let's talk.", subject)) is None


def test_encoded_subject_is_read() -> None:
    subject = "=?iso-8859-1?Q?R=E9ponse_automatique_:_Petite_question?="
    found = detect(message("Je suis absent jusqu'au 3 décembre.", subject))
    assert found is not None
    assert found.out_of_office
    assert found.return_date == on(12, 3)


def test_a_date_in_the_quoted_original_is_not_the_return_date() -> None:
    body = (
        "Thank you for your message. I am out of the office with limited access to email.\n\n"
        "-----Original Message-----\nFrom: Mike Rowe <mike@acme.example>\n"
        f"Sent: Friday, November 27, {Y} 9:00 AM\nSubject: Quick question\n\n"
        "Could we talk until 4 December, back on 9 December?\n"
    )
    found = detect(message(body, "Automatic reply: Quick question"))
    assert found is not None
    assert found.out_of_office
    assert found.return_date is None


# --- never raises --------------------------------------------------------------------------

SAMPLE = message(AWAY, "Automatic reply: Quick question", Auto_Submitted="auto-generated")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.dates(date(1990, 1, 1), date(2100, 1, 1)))
def test_find_return_date_never_raises_and_stays_within_a_year(text: str, day: date) -> None:
    back = autoreply.find_return_date(text, received=day)
    assert back is None or day <= back <= day + timedelta(days=366)


WORDS = st.sampled_from(
    [
        *("back", "until", "bis", "zum", "jusqu'au", "hasta", "el", "de", "retour", "zurück"),
        *("am", "wieder", "through", "inclus", "einschließlich", "Monday", "lunes", "3", "12"),
        *(f"{Y}", "3.", "12.", "/", ".", "-", "December", "Dezember", "décembre", "diciembre"),
        *("on", "the", "of", ",", "Dec", "1st"),
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(WORDS, max_size=12), st.dates(date(2000, 1, 1), date(2090, 12, 1)))
def test_find_return_date_on_date_like_word_soup(words: list[str], day: date) -> None:
    back = autoreply.find_return_date(" ".join(words), received=day)
    assert back is None or day <= back <= day + timedelta(days=366)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, len(SAMPLE.as_bytes())))
def test_detect_never_raises_on_broken_messages(noise: bytes, at: int) -> None:
    raw = SAMPLE.as_bytes()
    for data in (noise, raw[:at] + noise + raw[at:]):
        msg = message_from_bytes(data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        found = autoreply.detect_auto_reply(msg, mailtext.body_text(msg), received=RECEIVED)
        assert found is None or isinstance(found, autoreply.AutoReply)
