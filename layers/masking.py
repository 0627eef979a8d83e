"""The one masking policy for personal data typed into free text (a description, a note, an
address, an event's data): mobile and landline numbers as people write them (spaces,
dashes, +86, full-width digits), resident identity numbers and e-mail addresses are
blanked out for everyone but the command centre's own view of a case. Every way out
(listings, events, Open311, exports, OGC API) goes through mask_contacts / mask_value."""

from __future__ import annotations

import re
from typing import Any

_D = "[0-9０-９]"  # digits as typed on a phone: ASCII or full-width
_SEP = r"[\s\-–—.·]?"  # one separator people put between groups
_NOT_DIGIT_BEFORE = r"(?<![0-9０-９A-Za-z])"
_NOT_DIGIT_AFTER = r"(?![0-9０-９])"

# resident identity number (居民身份证, 18 characters, the last a digit or X), groups 6-8-4
_ID = re.compile(
    _NOT_DIGIT_BEFORE
    + rf"[1-9１-９]{_D}{{5}}{_SEP}(?:19|20|１９|２０){_D}{{2}}{_D}{{4}}{_SEP}{_D}{{3}}[0-9０-９Xx]"
    + r"(?![0-9０-９A-Za-z])")
# mobile: 1[3-9]x xxxx xxxx, optionally after +86 / 0086 / 86
_MOBILE = re.compile(
    _NOT_DIGIT_BEFORE
    + rf"(?:(?:\+|＋|00)?86{_SEP})?[1１][3-9３-９]{_D}{_SEP}{_D}{{4}}{_SEP}{_D}{{4}}"
    + _NOT_DIGIT_AFTER)
# landline: area code 0xx(x) (maybe in brackets) then 7-8 digits, maybe grouped 3-4 + 4
_LANDLINE = re.compile(
    _NOT_DIGIT_BEFORE
    + rf"(?:(?:\+|＋|00)?86{_SEP})?[(（]?[0０]{_D}{{2,3}}[)）]?{_SEP}{_D}{{3,4}}{_SEP}{_D}{{4}}"
    + _NOT_DIGIT_AFTER)
_EMAIL = re.compile(r"[\w.+-]+[@＠][\w-]+(?:\.[\w-]+)+")


def mask_contacts(text: str | None) -> str | None:
    """Identity numbers, phone numbers and e-mail addresses in text replaced by a word
    saying what was removed."""
    if not text:
        return text
    text = _ID.sub("[id number removed]", text)
    text = _MOBILE.sub("[phone removed]", text)
    text = _LANDLINE.sub("[phone removed]", text)
    return _EMAIL.sub("[email removed]", text)


def mask_value(value: Any) -> Any:
    """mask_contacts over every string of a JSON value (an event's data, say)."""
    if isinstance(value, str):
        return mask_contacts(value)
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    return value
