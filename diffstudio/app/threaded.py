"""A callback-style engine call turned into a job generator.

Samplers are plugin functions that report every step through a callback (the k-diffusion
contract), so a sampling job cannot yield from inside them. :func:`events_of` runs such a call
in a thread of its own and yields what it emits, in order, as they arrive; an event class with
``latest_only = True`` (a live frame, a progress report) replaces an older one of its type still
waiting, so a slow consumer is never flooded and never stalls the engine. The call's return
value arrives as a :class:`~diffstudio.app.events.Done` event and its exception is raised in the
consumer. Closing the generator asks the call to stop (its ``should_stop`` turns true; the engine
polls it every step) and waits for the thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from diffstudio.app.events import Done

__all__ = ["Emit", "StopCheck", "events_of"]

R = TypeVar("R")
Emit = Callable[[Any], None]
StopCheck = Callable[[], bool]


class _Channel:
    """Events from the worker thread to the generator; coalesces latest-only events."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._condition = threading.Condition()
        self.replaced = 0
        self.finished = False

    def put(self, event: Any) -> None:
        with self._condition:
            if getattr(event, "latest_only", False):
                for position in range(len(self._items) - 1, -1, -1):
                    if type(self._items[position]) is type(event):
                        self._items[position] = event
                        self.replaced += 1
                        return
            self._items.append(event)
            self._condition.notify()

    def finish(self) -> None:
        with self._condition:
            self.finished = True
            self._condition.notify()

    def take_all(self, timeout: float) -> tuple[list[Any], bool]:
        with self._condition:
            if not self._items and not self.finished:
                self._condition.wait(timeout)
            items = list(self._items)
            self._items.clear()
            return items, self.finished


def events_of(
    work: Callable[[Emit, StopCheck], Any],
    *,
    should_stop: StopCheck | None = None,
    name: str = "diffstudio-job",
) -> Iterator[Any]:
    """Run ``work(emit, stop)`` in a thread; yield each emitted event, then
    ``Done(return value)``. An exception of ``work`` is re-raised here. ``stop()`` turns true
    when the generator is closed or the caller's ``should_stop`` does (a window's Cancel button
    reaches the engine even while no event is flowing)."""
    channel = _Channel()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def stop_check() -> bool:
        return stop.is_set() or (should_stop is not None and bool(should_stop()))

    def target() -> None:
        try:
            outcome["result"] = work(channel.put, stop_check)
        except BaseException as exc:  # delivered to the consumer, which raises it
            outcome["error"] = exc
        finally:
            channel.finish()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        while True:
            items, finished = channel.take_all(timeout=0.1)
            yield from items
            if finished and not items:
                break
        if "error" in outcome:
            raise outcome["error"]
        yield Done(outcome.get("result"))
    finally:
        stop.set()
        thread.join()
