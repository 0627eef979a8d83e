"""Contact details typed into free text (a description, a note, an address) blanked out for
everyone but the command centre: contacts typed into the text are contacts too."""

from __future__ import annotations

import re

_PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_contacts(text: str | None) -> str | None:
    """Phone numbers and e-mail addresses of text replaced by a word saying so."""
    if not text:
        return text
    return _EMAIL.sub("[email removed]", _PHONE.sub("[phone removed]", text))
