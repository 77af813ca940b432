"""The event stream: status changes as Server-Sent Events, from one store reader per process (docs/events.md)."""
