"""Following the event stream (Server-Sent Events) with both clients, resuming after a dropped connection.

`Client.iter_events()` / `AsyncClient.iter_events()` yield one `Event` per status change. When the connection
drops, the server ends the stream (a slow reader, a restart) or a replica goes away, they reconnect with
`Last-Event-ID` set to the last event they yielded, so the caller sees every event once, in order,
whatever happened in between. Only errors a retry cannot fix (a bad key, an unknown instance) are raised.

Before the first event, that id is the stream's position: a stream opened without `after` starts with a
message that is only `id: <the newest event id>`, and a reconnect resumes from it, so the changes made
while the service restarted are not lost by a follower that had not received any event yet.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from novita_gpu_client.calls import Json
from novita_gpu_client.errors import ApiError, ServiceConnectionError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
HEARTBEAT_TIMEOUT = 45.0  # the server sends a comment every 15 s: three missed means the connection is dead


@dataclass(frozen=True, slots=True)
class Event:
    """One status change: `id` orders events and resumes a stream, `type` is e.g. "instance.ready", and
    `data` is the same JSON body a webhook receives (instanceId, name, status, previousStatus, ...)."""

    id: int
    type: str
    data: Json

    @property
    def instance_id(self) -> str:
        return str(self.data.get("instanceId", ""))

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))


@dataclass(frozen=True, slots=True)
class Message:
    """One Server-Sent Events message (comments are not messages). A message that carries only an `id:`
    has `event` and `data` "": the spec dispatches no event for it but it sets the last event id (the
    server opens a stream that has no cursor with one: the position to resume from)."""

    event: str
    data: str
    id: str | None


class SseDecoder:
    """The Server-Sent Events line protocol (WHATWG HTML, 9.2.6), fed one line at a time."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Message | None:
        """The message completed by this line (a blank one), else None."""
        if not line:
            if not self._data and not self._event:
                position, self._id = self._id, None
                return None if position is None else Message("", "", position)
            message = Message(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class Follower:
    """What both clients' `events()` share: the request to send, the last id seen, when to reconnect."""

    def __init__(
        self,
        instance: str | None,
        after: int | None,
        follow: bool,
        *,
        heartbeat_timeout: float,
        give_up_after: float | None,
        max_delay: float = 10.0,
    ) -> None:
        self.path = "/api/events/stream" if instance is None else f"/api/instances/{instance}/events/stream"
        self.last_id = after
        self.follow = follow
        self.heartbeat_timeout = heartbeat_timeout
        self.give_up_after = give_up_after
        self.max_delay = max_delay
        self.failures = 0
        self.failing_since: float | None = None
        self.closed_by_server = False
        self.ever_connected = False

    def request(self, connect_timeout: float) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.stream` / `httpx.AsyncClient.stream`."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        params: dict[str, str] = {}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        if not self.follow:
            params["follow"] = "false"
        self.closed_by_server = False
        return {
            "method": "GET",
            "url": self.path,
            "headers": headers,
            "params": params,
            # The server writes at least a heartbeat every 15 s: silence past this means a dead connection.
            "timeout": httpx.Timeout(connect_timeout, read=self.heartbeat_timeout),
        }

    def connected(self) -> None:
        self.ever_connected = True
        self.failures = 0
        self.failing_since = None

    def on_message(self, message: Message) -> Event | None:
        """The event this message carries (None for the server's `close` notice, remembered)."""
        if message.event == "close":
            self.closed_by_server = True
            return None
        if message.id is None or not message.id.isdigit():
            return None
        event_id = int(message.id)
        if self.last_id is not None and event_id <= self.last_id:
            return None  # already yielded before a reconnect
        self.last_id = event_id
        if not message.event:
            return None  # the stream's position, not an event: a reconnect resumes after it
        data = json.loads(message.data) if message.data else {}
        return Event(event_id, message.event, data if isinstance(data, dict) else {"value": data})

    def ended(self) -> bool:
        """After the response ended cleanly: True when the iteration is over (a stream without follow)."""
        return not self.follow and not self.closed_by_server

    def after_answer(self, error: ApiError) -> float:
        """Seconds before reconnecting after an error answer; raises the ones a retry cannot fix."""
        if error.status not in RETRY_STATUSES:
            raise error
        return self._backoff(error.retry_after, error)

    def after_drop(self, exc: Exception | None = None) -> float:
        """Seconds before reconnecting after the connection dropped or the server closed the stream."""
        if self.closed_by_server:
            return random.uniform(0.05, 0.25)  # another replica, or this one restarted, takes it at once
        if not self.ever_connected and isinstance(exc, httpx.ConnectError):
            # Never reached: say so at once rather than retry against a wrong URL for minutes.
            raise ServiceConnectionError(f"cannot reach the event stream at {self.path} ({exc})") from exc
        return self._backoff(None, exc)

    def _backoff(self, retry_after: float | None, cause: Exception | None) -> float:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        elif self.give_up_after is not None and now - self.failing_since > self.give_up_after:
            if isinstance(cause, ApiError):
                raise cause
            raise ServiceConnectionError(
                f"the event stream at {self.path} could not be reached for {self.give_up_after:.0f} s ({cause})"
            ) from cause
        self.failures += 1
        delay: float = min(self.max_delay, 0.25 * 2.0 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)
