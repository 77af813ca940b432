"""novita_gpu_client.events under its former name (the event stream's decoding and following)."""

from novita_gpu_client.events import HEARTBEAT_TIMEOUT, Event, Follower, Message, SseDecoder

__all__ = ["HEARTBEAT_TIMEOUT", "Event", "Follower", "Message", "SseDecoder"]
