"""Pinned staging slots handed between threads: a capture/preprocess thread fills one with a
frame's pixels while the inference thread's stream still copies earlier ones.

A slot is free again only when the consumer gives it back *and* the GPU has finished reading it
(its event). The pool grows on demand up to ``max_slots`` (a consumer that never gives slots
back fails loudly instead of exhausting pinned memory); in a steady state it allocates nothing.
Device side: Python 3.8, no torch.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, List

import numpy as np

from edge_resnet.core import BackendError
from edge_resnet.cuda.memory import PinnedBuffer, Stream
from edge_resnet.cuda.ring import BatchSlot

__all__ = ["StagingPool"]


class StagingPool:
    """Free list of :class:`BatchSlot` s, each holding one pinned ``"host"`` buffer."""

    def __init__(self, mapped: bool = False, max_slots: int = 64) -> None:
        self.mapped = mapped
        self.max_slots = max_slots
        self._lock = threading.Lock()
        self._free: Deque[BatchSlot] = deque()
        self._all: List[BatchSlot] = []

    def acquire(self, nbytes: int) -> BatchSlot:
        """A slot whose buffer holds at least ``nbytes`` and that no copy still reads."""
        with self._lock:
            if self._free:
                slot = self._free.popleft()
            elif len(self._all) < self.max_slots:
                slot = BatchSlot(len(self._all), {"host": PinnedBuffer(nbytes, np.uint8,
                                                                       mapped=self.mapped)})
                self._all.append(slot)
            else:
                raise BackendError(f"{self.max_slots} staged frames were never consumed; "
                                   "run() every staged frame (or close the preprocessor)")
        slot.wait()  # the GPU may still be reading this slot's previous frame
        if slot["host"].nbytes < nbytes:  # a bigger frame than this slot has seen
            slot["host"].close()
            slot.buffers["host"] = PinnedBuffer(nbytes, np.uint8, mapped=self.mapped)
        return slot

    def release(self, slot: BatchSlot, stream: Stream) -> None:
        """Give ``slot`` back once the work queued on ``stream`` so far has read it."""
        slot.release(stream)
        with self._lock:
            self._free.append(slot)

    def close(self) -> None:
        with self._lock:
            slots, self._all = self._all, []
            self._free.clear()
        for slot in slots:
            slot.close()
