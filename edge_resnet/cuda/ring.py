"""Two (or more) batches in flight over buffers allocated once.

A slot is a set of named buffers (say pinned input, device input, device output, pinned output)
plus an :class:`Event` recorded after the slot's last async operation. :meth:`InFlightRing.acquire`
hands out the slots round-robin and, before handing one out again, waits for its event: while
the GPU still works on batch n, the host fills batch n+1 in the other slot, and a slot's pinned
memory is never overwritten under a copy that still reads it. Nothing is allocated after
construction. Device side: Python 3.8, no torch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from edge_resnet.core import InputError
from edge_resnet.cuda.memory import Event, Stream

__all__ = ["BatchSlot", "InFlightRing"]


class BatchSlot:
    """One batch's buffers (``slot["input"]``) and its completion event."""

    def __init__(self, index: int, buffers: Dict[str, Any]) -> None:
        self.index = index
        self.buffers = buffers
        self.done = Event()

    def __getitem__(self, name: str) -> Any:
        return self.buffers[name]

    def release(self, stream: Stream) -> None:
        """Mark the end of this slot's work on ``stream``; the slot is reusable once it is done."""
        self.done.record(stream)

    def wait(self) -> None:
        """Block until the work recorded by :meth:`release` has finished."""
        self.done.synchronize()

    def close(self) -> None:
        self.done.synchronize()
        for buffer in self.buffers.values():
            buffer.close()
        self.done.close()


class InFlightRing:
    """``depth`` slots made by ``make_buffers()`` (called ``depth`` times, here and only here)."""

    def __init__(self, make_buffers: Callable[[], Dict[str, Any]], depth: int = 2) -> None:
        if depth < 1:
            raise InputError(f"ring depth must be >= 1, got {depth}")
        self.slots: List[BatchSlot] = []
        try:
            for i in range(depth):
                self.slots.append(BatchSlot(i, make_buffers()))
        except BaseException:
            self.close()
            raise
        self._next = 0

    def acquire(self) -> BatchSlot:
        """The next slot, after its previous use has completed on the GPU."""
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        slot.wait()
        return slot

    def wait_all(self) -> None:
        for slot in self.slots:
            slot.wait()

    def close(self) -> None:
        slots, self.slots = self.slots, []
        for slot in slots:
            slot.close()

    def __enter__(self) -> "InFlightRing":
        return self

    def __exit__(self, *exc: Optional[object]) -> None:
        self.close()
