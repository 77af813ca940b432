"""How long a create whose answer never came stays in doubt: looked for at Novita before it is sent again.

A create (of an instance or a storage) is sent once. When its sender dies, or the answer is lost after the
request may have been read, Novita may or may not have acted; the row keeps `create_attempted_at` and its
worker looks for what it would have made, under the name it was sent with, until `looked_up_until`. By
then the call has ended at Novita whatever happened to its caller, so a create not found is sent again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from novita_gpu.kit.settings import Settings

# After the longest call could have ended: a few listings' worth of time for Novita to show what it made.
AMBIGUOUS_CREATE_GRACE = timedelta(seconds=20)


def longest_create_call(settings: Settings) -> timedelta:
    """The longest a create call lasts: retries of a request never sent, within NOVITA_RETRY_DEADLINE_SECONDS,
    then one attempt of at most NOVITA_TIMEOUT_SECONDS. Novita cannot receive it later than that."""
    return timedelta(seconds=settings.novita_retry_deadline_seconds + settings.novita_timeout_seconds)


def looked_up_until(sent_at: datetime, settings: Settings) -> datetime:
    """Until when a create sent at `sent_at` whose sender died before any answer is looked for in Novita's
    list before it is sent again: once its call would have ended, for AMBIGUOUS_CREATE_GRACE, as a create
    Novita answered with an error."""
    return sent_at + longest_create_call(settings) + AMBIGUOUS_CREATE_GRACE
