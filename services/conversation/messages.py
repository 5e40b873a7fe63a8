"""What the server itself says to a visitor, in English, German, French and
Spanish (pure): refusals of an answer or a lead form, error replies, and the
labels of answers a resume shows.

The decider logs the English text (``CommandRejected.detail`` and ``fields``:
events are the same whatever the visitor's language, so ``replay --verify``
holds); a reply translates it for the visitor's locale (:func:`localise`), from
the conversation's start context, at reply time. A lead field's English message
is a fragment ("is not a valid email address") the widget completes to "This
is not ..."; the other languages give whole sentences, which it shows as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from schemas.locales import language_of

LANGUAGES = ("en", "de", "fr", "es")


@dataclass(frozen=True, slots=True)
class Message:
    """One message per language; ``{name}`` marks a parameter (a number)."""

    en: str
    de: str
    fr: str
    es: str

    def __call__(self, **params: object) -> str:
        """The English text: what the decider logs."""
        return self.en.format(**params)

    def text(self, language: str) -> str:
        return str(getattr(self, language)) if language in LANGUAGES else self.en


# ---------------------------------------------------------------- free-text answers

ANSWER_EMPTY = Message(
    "Please enter an answer.",
    "Bitte geben Sie eine Antwort ein.",
    "Veuillez saisir une réponse.",
    "Escriba una respuesta.",
)
ANSWER_TOO_LONG = Message(
    "Please keep your answer under {limit} characters.",
    "Bitte halten Sie Ihre Antwort unter {limit} Zeichen.",
    "Votre réponse doit faire moins de {limit} caractères.",
    "Su respuesta debe tener menos de {limit} caracteres.",
)
NUMBER = Message(
    "Please enter a number.",
    "Bitte geben Sie eine Zahl ein.",
    "Veuillez saisir un nombre.",
    "Escriba un número.",
)
NUMBER_MIN = Message(
    "Please enter a number of at least {min}.",
    "Bitte geben Sie eine Zahl von mindestens {min} ein.",
    "Veuillez saisir un nombre supérieur ou égal à {min}.",
    "Escriba un número igual o mayor que {min}.",
)
NUMBER_MAX = Message(
    "Please enter a number of at most {max}.",
    "Bitte geben Sie eine Zahl von höchstens {max} ein.",
    "Veuillez saisir un nombre inférieur ou égal à {max}.",
    "Escriba un número igual o menor que {max}.",
)
EMAIL = Message(
    "Please enter a valid email address.",
    "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
    "Veuillez saisir une adresse e-mail valide.",
    "Escriba un correo electrónico válido.",
)
PHONE = Message(
    "Please enter a valid phone number (e.g. +44 7911 123456).",
    "Bitte geben Sie eine gültige Telefonnummer ein (z. B. +49 30 1234567).",
    "Veuillez saisir un numéro de téléphone valide (p. ex. +33 1 23 45 67 89).",
    "Escriba un número de teléfono válido (p. ej. +34 912 345 678).",
)
DATE = Message(
    "Please enter a date as YYYY-MM-DD.",
    "Bitte geben Sie ein Datum im Format JJJJ-MM-TT ein.",
    "Veuillez saisir une date au format AAAA-MM-JJ.",
    "Escriba una fecha con el formato AAAA-MM-DD.",
)
CHOICE = Message(
    "Please pick one of the choices.",
    "Bitte wählen Sie eine der Antworten.",
    "Veuillez choisir l'une des réponses.",
    "Elija una de las respuestas.",
)
ANSWER_THIS = Message(
    "Please answer this one.",
    "Bitte beantworten Sie diese Frage.",
    "Veuillez répondre à cette question.",
    "Responda a esta pregunta.",
)

# ---------------------------------------------------------------- lead form fields

FIELD_BOOLEAN = Message(
    "must be true or false",
    "Bitte wählen Sie ja oder nein.",
    "Veuillez choisir oui ou non.",
    "Elija sí o no.",
)
CONSENT_REQUIRED = Message(
    "consent is required",
    "Ihre Einwilligung ist erforderlich.",
    "Votre consentement est obligatoire.",
    "Su consentimiento es obligatorio.",
)
FIELD_REQUIRED = Message(
    "is required",
    "Dieses Feld ist erforderlich.",
    "Ce champ est obligatoire.",
    "Este campo es obligatorio.",
)
FIELD_TOO_LONG = Message(
    "must be at most {limit} characters",
    "Bitte höchstens {limit} Zeichen.",
    "{limit} caractères au maximum, s'il vous plaît.",
    "Como máximo {limit} caracteres, por favor.",
)
FIELD_EMAIL = Message(
    "is not a valid email address",
    "Das ist keine gültige E-Mail-Adresse.",
    "Cette adresse e-mail n'est pas valide.",
    "Este correo electrónico no es válido.",
)
FIELD_PHONE = Message(
    "is not a valid phone number (use international format, e.g. +44 ...)",
    "Das ist keine gültige Telefonnummer (internationales Format, z. B. +49 ...).",
    "Ce numéro de téléphone n'est pas valide (format international, p. ex. +33 ...).",
    "Este teléfono no es válido (formato internacional, p. ej. +34 ...).",
)
NOT_A_FIELD = Message(
    "is not a field of this form",
    "Dieses Feld gehört nicht zum Formular.",
    "Ce champ ne fait pas partie du formulaire.",
    "Este campo no forma parte del formulario.",
)
CONTACT_NEEDED = Message(
    "give an email address or a phone number",
    "Bitte geben Sie eine E-Mail-Adresse oder Telefonnummer an.",
    "Indiquez une adresse e-mail ou un numéro de téléphone.",
    "Indique un correo electrónico o un teléfono.",
)

# ---------------------------------------------------------------- error replies

ERRORS: dict[str, Message] = {
    # the English of each is ERROR_MESSAGES's (services.conversation.replies)
    "not_started": Message(
        "This conversation has not started.",
        "Diese Unterhaltung hat noch nicht begonnen.",
        "Cette conversation n'a pas encore commencé.",
        "Esta conversación no ha empezado.",
    ),
    "no_conversation": Message(
        "No conversation to resume.",
        "Keine Unterhaltung zum Fortsetzen.",
        "Aucune conversation à reprendre.",
        "No hay ninguna conversación que reanudar.",
    ),
    "unknown_flow": Message(
        "This quiz is not available.",
        "Dieses Quiz ist nicht verfügbar.",
        "Ce quiz n'est pas disponible.",
        "Este cuestionario no está disponible.",
    ),
    "already_started": Message(
        "This conversation has already started.",
        "Diese Unterhaltung hat bereits begonnen.",
        "Cette conversation a déjà commencé.",
        "Esta conversación ya ha empezado.",
    ),
    "completed": Message(
        "This conversation has ended.",
        "Diese Unterhaltung ist beendet.",
        "Cette conversation est terminée.",
        "Esta conversación ha terminado.",
    ),
    "wrong_node": Message(
        "That question is no longer current.",
        "Diese Frage ist nicht mehr aktuell.",
        "Cette question n'est plus d'actualité.",
        "Esa pregunta ya no está vigente.",
    ),
    "unknown_button": Message(
        "That answer is not one of the choices.",
        "Diese Antwort gehört nicht zur Auswahl.",
        "Cette réponse ne fait pas partie des choix.",
        "Esa respuesta no es una de las opciones.",
    ),
    "stale_command": Message(
        "That was already answered.",
        "Das wurde bereits beantwortet.",
        "Cela a déjà reçu une réponse.",
        "Eso ya se respondió.",
    ),
    "out_of_order": Message(
        "A message was skipped; please resume the conversation.",
        "Eine Nachricht fehlt; bitte setzen Sie die Unterhaltung fort.",
        "Un message a été manqué ; veuillez reprendre la conversation.",
        "Se perdió un mensaje; reanude la conversación.",
    ),
    "invalid_lead": Message(
        "Please check the highlighted fields.",
        "Bitte prüfen Sie die markierten Felder.",
        "Veuillez vérifier les champs signalés.",
        "Revise los campos marcados.",
    ),
    "invalid_answer": Message(
        "Please check your answer.",
        "Bitte prüfen Sie Ihre Antwort.",
        "Veuillez vérifier votre réponse.",
        "Revise su respuesta.",
    ),
    "cannot_go_back": Message(
        "That answer can no longer be changed.",
        "Diese Antwort lässt sich nicht mehr ändern.",
        "Cette réponse ne peut plus être modifiée.",
        "Esa respuesta ya no se puede cambiar.",
    ),
    "conversation_too_long": Message(
        "This conversation is too long to go on; please start again.",
        "Diese Unterhaltung ist zu lang, um weiterzugehen; bitte beginnen Sie neu.",
        "Cette conversation est trop longue pour continuer ; veuillez recommencer.",
        "Esta conversación es demasiado larga para continuar; empiece de nuevo.",
    ),
}

# ---------------------------------------------------------------- answers on resume

DETAILS_SENT = Message("Details sent", "Angaben gesendet", "Coordonnées envoyées", "Datos enviados")
SKIPPED = Message("Skipped", "Übersprungen", "Passé", "Omitido")
ANSWER_SENT = Message("Answer sent", "Antwort gesendet", "Réponse envoyée", "Respuesta enviada")

CATALOGUE: tuple[Message, ...] = (
    ANSWER_EMPTY,
    ANSWER_TOO_LONG,
    NUMBER,
    NUMBER_MIN,
    NUMBER_MAX,
    EMAIL,
    PHONE,
    DATE,
    CHOICE,
    ANSWER_THIS,
    FIELD_BOOLEAN,
    CONSENT_REQUIRED,
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    FIELD_EMAIL,
    FIELD_PHONE,
    NOT_A_FIELD,
    CONTACT_NEEDED,
    *ERRORS.values(),
)
"""Every message :func:`localise` translates (the answer labels are picked by
:func:`in_language` directly)."""

_PARAM = re.compile(r"\{(\w+)\}")


@cache
def _index() -> tuple[dict[str, Message], tuple[tuple[re.Pattern[str], Message], ...]]:
    exact = {m.en: m for m in CATALOGUE if not _PARAM.search(m.en)}
    patterns = []
    for message in CATALOGUE:
        if _PARAM.search(message.en):
            parts = _PARAM.split(message.en)  # literal, name, literal, name, ...
            regex = "".join(
                re.escape(part) if i % 2 == 0 else rf"(?P<{part}>[-+0-9.e]{{1,40}})"
                for i, part in enumerate(parts)
            )
            patterns.append((re.compile(regex), message))
    return exact, tuple(patterns)


def visitor_language(locale: str) -> str:
    """The language of ``locale`` the server speaks (en, de, fr, es), else ``en``."""
    language = language_of(locale)
    return language if language in LANGUAGES else "en"


def localise(text: str, locale: str) -> str:
    """``text``, an English message of the catalogue as the decider logged it, in
    the language of ``locale``; any other text as it is."""
    language = visitor_language(locale)
    if language == "en" or not text:
        return text
    exact, patterns = _index()
    message = exact.get(text)
    if message is not None:
        return message.text(language)
    for pattern, message in patterns:
        match = pattern.fullmatch(text)
        if match:
            return message.text(language).format(**match.groupdict())
    return text


def in_language(message: Message, locale: str) -> str:
    return message.text(visitor_language(locale))
