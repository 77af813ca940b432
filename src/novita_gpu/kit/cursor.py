"""List cursors: the position after a page's last row, as `<created_at in µs since the epoch>.<row id>` (instances, volumes).

A cursor only positions a list inside the caller's own instances (the owner filter always applies), and
both of its values are shown in the page it came from, so it is not signed: a signature would protect
nothing, would make cursors die with the key, and would make the parameter opaque where the OpenAPI
document can now state exactly which cursors are accepted (`CURSOR_PATTERN`). Every string matching the
pattern is a valid position; anything else, whatever it decodes to, is 400 INVALID_CURSOR: no time zone,
offset or calendar arithmetic is left for a crafted value to break.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from novita_gpu.kit.errors import InvalidInput

# 17 digits reach the year 5138: every value converts without overflow. Ids are `inst_` + hex; any id
# of the same characters is a valid bound for the `(created_at, id) <` comparison.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[A-Za-z0-9_-]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, instance_id: str) -> str:
    """The cursor of the page that follows the row (`created_at`, `instance_id`)."""
    if created_at.tzinfo is None:  # the store's times are UTC
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - _EPOCH) // _MICROSECOND}.{instance_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, instance id) a cursor stands for; 400 INVALID_CURSOR for anything we do not issue."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInput(
            "INVALID_CURSOR",
            "The cursor is not one this API returned; pass a page's nextCursor as it is.",
            field="cursor",
            field_message="not a cursor this API returned",
        )
    micros, instance_id = cursor.split(".", 1)
    return _EPOCH + int(micros) * _MICROSECOND, instance_id
