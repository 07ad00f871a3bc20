"""Request slots shared fairly by the live streams of one client.

Several streams explained by one process send their requests over one gRPC channel; how many
requests are in flight at once bounds how long a frame waits in the server's queue (latency)
and how large Triton's batches can grow (throughput). `FairShare` holds that bound and hands
the free slots out in the order the streams asked for them: a stream asks again only after it
was served, so under overload each stream gets its turn in rotation, and a fast source cannot
crowd a slow one out.
"""

from __future__ import annotations

import threading
from collections import deque


class FairShare:
    """At most `slots` requests in flight over all streams, granted first come, first served.

    A stream holds at most one place in the waiting line (its dispatcher asks for one slot at
    a time), so first come, first served is round robin across the streams.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("the shared requests in flight must be at least 1")
        self.slots = slots
        self.in_use = 0
        self.granted = 0  # slots handed out over the share's life
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a slot, keeping this place in line; False once `cancel` is set."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            while not (self._waiting[0] is ticket and self.in_use < self.slots):
                if cancel.is_set():
                    self._waiting.remove(ticket)
                    self._changed.notify_all()  # the next in line may be served now
                    return False
                self._changed.wait(0.05)
            self._waiting.popleft()
            self.in_use += 1
            self.granted += 1
            self._changed.notify_all()
            return True

    @property
    def waiting(self) -> int:
        """Streams waiting for a slot."""
        with self._changed:
            return len(self._waiting)

    def release(self) -> None:
        """Give a slot back (its request was answered, refused or abandoned)."""
        with self._changed:
            self.in_use = max(0, self.in_use - 1)
            self._changed.notify_all()
