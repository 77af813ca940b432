"""The `--wait` status line with an injected clock: on a terminal it redraws the time waited while the
status stays the same; elsewhere it writes a line per change and nothing in between."""

from __future__ import annotations

import io
import time

from rich.console import Console

from novita_gpu_client.cli.output import StatusLine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not drawn in time"
        time.sleep(0.001)


def test_on_a_terminal_the_time_moves_while_the_status_stays() -> None:
    out, clock = io.StringIO(), Clock()
    line = StatusLine(Console(file=out, force_terminal=True, width=60), clock=clock, every=0.001)
    line({"status": "creating", "statusMessage": "No capacity yet."})
    for second in (1, 2, 3):
        clock.now += 1
        until(lambda second=second: f"\r{second:5d} s  creating: No capacity yet." in out.getvalue())
    line({"status": "starting"})
    clock.now += 1.5
    until(lambda: "\r    4 s  starting" in out.getvalue())
    line.close()
    assert out.getvalue().endswith("\n") and "\n" not in out.getvalue()[:-1]  # one line, rewritten in place
    assert line.ticker is not None and not line.ticker.is_alive()  # closed: nothing more is drawn


def test_elsewhere_each_change_is_one_line_and_nothing_ticks() -> None:
    out, clock = io.StringIO(), Clock()
    line = StatusLine(Console(file=out, force_terminal=False, width=60), clock=clock, every=0.001)
    line({"status": "creating"})
    clock.now += 7.9
    line({"status": "ready", "statusMessage": "Every http port answered."})
    line.close()
    assert line.ticker is None
    assert out.getvalue() == "    0 s  creating\n    7 s  ready: Every http port answered.\n"
