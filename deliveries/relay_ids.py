"""The relay's own id of a message, read from its 250 reply to the end of DATA (pure).

Relays that report what became of mail later (an ESP's tracking webhook) name it by their id,
which most of them give in that reply:

    Amazon SES       250 Ok 0100018c5ab7c1d2-6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-000000
                     (the SES event's ``mail.messageId``)
    SendGrid         250 Ok: queued as nhIMmON9SFOPcT0ii4nt2A
                     (the head of the event's ``sg_message_id``, before its first ".")
    Postfix          250 2.0.0 Ok: queued as 4Xyz1abcDEf
    Mailjet, ZoneMTA 250 OK queued as <id> / 250 Message queued as <id>
    Exim             250 OK id=1qAbCd-000123-Ef
    Haraka           250 Message Queued (<id>)

Mailgun answers "250 Great success" and gives none: its events are matched by the Message-ID
header instead (``api/esp_events.py``). One reply ends one SMTP transaction, so every recipient
of a multi-recipient transaction shares the id; an event names its recipient, which tells them
apart.

Runs for every delivered recipient in the worker (issue 15: CPU per message), so it looks at the
first line's head only, with anchored, bounded patterns, and never raises.
"""

from __future__ import annotations

import re

#: The longest id kept (the column's width). Real ones are 11-70 characters.
MAX_RELAY_ID = 128

# Only the head of the text is read: an id sits at its start, and the rest (a multi-line
# reply, a long banner) costs time for nothing.
_HEAD = 300

# The characters an id is made of, seen in every form above; nothing that could break a log
# line, a header or a URL. It starts with a letter or digit.
_ID = r"([A-Za-z0-9][A-Za-z0-9_.=+/@-]{0,127})"
# One pattern, one pass: an optional enhanced status code, then one of the forms. Exactly one
# group takes part in a match, the id.
_REPLY = re.compile(
    r"(?:[245]\.\d{1,3}\.\d{1,3}\s+)?(?:"
    r"(?:ok:?\s+|message\s+)?queued\s+as\s+<?"
    + _ID
    + r"|ok\s+id="
    + _ID
    + r"|message\s+queued\s+\("
    + _ID
    + r"\)"
    # SES: 16 hex digits, a UUID, a 6-digit suffix. Strict on purpose: "250 OK <word>" from
    # other servers ("OK Accepted", Gmail's "OK 1701234567 ...") names no message.
    + r"|ok\s+([0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-\d{6})\b"
    + r")",
    re.IGNORECASE,
)
#: A whole id as it is stored: what an id from elsewhere (an ESP's event) must look like to be
#: looked up.
RELAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+/@-]{0,127}")
# What may follow an id: the end, a space, or closing punctuation; anything else (a character
# outside the id's set) means the text was not an id of ours to read.
_AFTER_ID = re.compile(r"(?:$|[\s>),;.\]])")


def relay_message_id(reply_text: str) -> str:
    """The relay's message id in the text of its reply to DATA, or "" when it gives none.

    ``reply_text`` is the reply less its code, as the transport keeps it ("2.0.0 Ok: queued as
    ABC"). The result is at most ``MAX_RELAY_ID`` characters of ``[A-Za-z0-9_.=+/@-]``.
    """
    if not isinstance(reply_text, str):
        return ""
    found = _REPLY.match(reply_text, 0, _HEAD)
    if found is None or found.lastindex is None:
        return ""
    relay_id = found.group(found.lastindex).rstrip(".")
    if not _AFTER_ID.match(reply_text, found.start(found.lastindex) + len(relay_id), _HEAD + 1):
        return ""
    return relay_id
