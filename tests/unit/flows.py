"""Small flows for unit tests, built from inline YAML through the real validator.

Every flow here passes :func:`schemas.flow_validation.validate_text`, so a
change to the flow format that breaks them fails loudly at import time.
Note that our YAML loader keeps ``yes``/``no`` as strings (YAML 1.2 booleans).
"""

from __future__ import annotations

from functools import cache

from policy.uniform import UniformPolicy
from schemas.flow import Flow
from schemas.flow_validation import validate_text
from services.catalog import FlowCatalog
from services.fakes import InMemoryKeyStore
from services.processor.batch import BatchDecider

QUIZ_ID = "quiz"

# welcome (message) -> intro (message) -> size (question)
#   size.small -> colour                       (single next)
#   size.big   -> [colour, extra, note]        (decision point, 3 candidates)
#   size.no    -> end_early                    (button id "no" stays a string)
# note (message) -> colour; extra (question) -> colour
# colour.red -> contact (lead form) -> thanks (message) -> end_lead
# colour.blue -> end_nolead
QUIZ_YAML = """\
id: quiz
version: {version}
title: Test quiz
start: welcome
nodes:
  - id: welcome
    kind: message
    text: Hello!
    next: intro
  - id: intro
    kind: message
    text: Two quick questions.
    next: size
  - id: size
    kind: question
    text: How big is it?
    buttons:
      - id: small
        label: Small
        next: colour
      - id: big
        label: Big
        next: [colour, extra, note]
      - id: no
        label: Not sure
        next: end_early
  - id: note
    kind: message
    text: Big ones need a note.
    next: colour
  - id: extra
    kind: question
    text: Anything else?
    buttons:
      - id: yes
        label: Yes please
        next: colour
  - id: colour
    kind: question
    text: Which colour (v{version})?
    buttons:
      - id: red
        label: Red
        next: contact
      - id: blue
        label: Blue
        next: end_nolead
  - id: contact
    kind: lead_form
    text: Where can we reach you?
    fields:
      - {{name: name, type: text, label: Your name, required: true}}
      - {{name: email, type: email, label: Email, required: false}}
      - {{name: phone, type: phone, label: Phone, required: false}}
      - {{name: consent, type: consent, label: I agree, required: true}}
    next: thanks
  - id: thanks
    kind: message
    text: Thanks!
    next: end_lead
  - id: end_lead
    kind: end
    text: We will be in touch.
  - id: end_nolead
    kind: end
    text: Bye.
  - id: end_early
    kind: end
    text: Come back later.
"""

# A flow whose messages run straight into an end: a start completes it.
SHORT_YAML = """\
id: short
version: 1
start: hello
nodes:
  - id: hello
    kind: message
    text: Hello!
    next: bye
  - id: bye
    kind: end
    text: That was quick.
"""

# The consent field is *not* named "consent" (authors may name fields freely).
AGREE_YAML = """\
id: agree
version: 1
start: form
nodes:
  - id: form
    kind: lead_form
    text: Your email?
    fields:
      - {name: email, type: email, label: Email, required: true}
      - {name: agree, type: consent, label: I agree, required: true}
    next: done
  - id: done
    kind: end
    text: Thanks.
"""


def flow_from_yaml(text: str, filename: str = "test.yaml") -> Flow:
    """Validate ``text`` as a flow file; fail with every error if it is invalid."""
    flow, errors = validate_text(text, filename)
    if flow is None:
        raise AssertionError("invalid test flow:\n" + "\n".join(str(e) for e in errors))
    return flow


@cache
def quiz(version: int = 1) -> Flow:
    """The main test quiz (see the map above ``QUIZ_YAML``)."""
    return flow_from_yaml(QUIZ_YAML.format(version=version), f"quiz-v{version}.yaml")


@cache
def short() -> Flow:
    return flow_from_yaml(SHORT_YAML, "short.yaml")


@cache
def agree() -> Flow:
    return flow_from_yaml(AGREE_YAML, "agree.yaml")


def decider_for(keys: InMemoryKeyStore | None = None) -> BatchDecider:
    """The processor's decider on the quiz flow, the uniform policy and ``keys``."""
    return BatchDecider(FlowCatalog([quiz()]), UniformPolicy(), keys or InMemoryKeyStore())
