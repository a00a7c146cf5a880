"""Long steps are never silent (issue 26, item 4): in a pipe or CI log, a line at least every interval saying
what is being done; the host build tells each source it compiled, n of m."""

from __future__ import annotations

import io
import time

from rich.console import Console

from generator.cli.progress import ProgressLines


def piped_console() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=False, width=160), stream


def test_a_silent_step_in_a_pipe_still_prints_a_line_each_interval_with_what_it_does():
    console, stream = piped_console()
    with ProgressLines("host build", console=console, interval=0.2) as lines:
        lines.step("compiled app.cpp (3 of 12)")
        time.sleep(0.9)
    said = [line for line in stream.getvalue().splitlines() if line]
    assert len(said) >= 2
    assert all(line.startswith("gen: host build: compiled app.cpp (3 of 12) (") for line in said)


def test_steps_faster_than_the_interval_do_not_flood_the_log():
    console, stream = piped_console()
    with ProgressLines("host build", console=console, interval=60) as lines:
        for number in range(1, 50):
            lines.step(f"compiled f{number}.cpp ({number} of 49)")
    assert stream.getvalue() == ""
