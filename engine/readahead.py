"""Reading a source's pages ahead of the mapping, in a thread of its own."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator


class ReadAhead:
    """Reads pages in a thread of its own, up to ``depth`` pages ahead of the mapping, so that
    waiting for the source's rate limit overlaps mapping and writing. ``depth`` 0 reads in the
    caller's thread. Iterating yields pages, or None when ``wake_in()`` seconds passed without
    one (the caller then flushes a batch that has waited long enough)."""

    _END = object()

    def __init__(self, pages: Iterator[Any], depth: int, wake_in: Callable[[], float | None]):
        self._pages, self._depth, self._wake_in = pages, depth, wake_in
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None

    def _produce(self) -> None:
        try:
            for page in self._pages:
                if not self._offer(page):
                    return
            self._offer(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer(exc)
        finally:
            close = getattr(self._pages, "close", None)
            if close:
                close()

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        if self._depth <= 0:
            yield from self._pages
            return
        self._thread = threading.Thread(target=self._produce, name="hexaflow-read-ahead",
                                        daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=self._wake_in())
            except queue.Empty:
                yield None
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
