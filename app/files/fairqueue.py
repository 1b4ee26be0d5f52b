"""The order in which extraction workers take files: owners in turn, each with a cap.

Pure (no Flask, no threads, no clock): ``Extractor`` (``extraction.py``) calls it under its
lock. Invariants:

- **Round-robin across owners.** ``take`` serves, of the owners with waiting files and a share
  not used up, the one served least recently (an owner not served yet first, in order of
  arrival). So a newcomer runs next, not after everyone already queued (a plain ring would put
  them behind an owner who was served while they were arriving), and an owner skipped for its
  cap is first once a run of theirs ends.
- **FIFO within an owner.** One owner's files run in the order they were put.
- **A share per owner.** At most ``per_owner`` of one owner's files run at once, however many
  workers are free: one user never holds every worker.
- **One place per file.** A file already waiting or running is not put again (the sweep may
  find a file this process has queued but not yet claimed).
"""

from __future__ import annotations

from collections import Counter, deque


class FairQueue:
    def __init__(self, per_owner: int) -> None:
        self.per_owner = max(1, per_owner)
        self._waiting: dict[int, deque[int]] = {}  # owner -> file ids, oldest first
        self._running: Counter[int] = Counter()  # owner -> files taken and not done
        self._served: dict[int, int] = {}  # owner -> when last served (a count of takes)
        self._takes = 0
        self._known: set[int] = set()  # file ids waiting or running

    def put(self, owner: int, item: int) -> bool:
        """Queue ``item`` for ``owner``; False when it is already waiting or running."""
        if item in self._known:
            return False
        self._known.add(item)
        self._waiting.setdefault(owner, deque()).append(item)
        return True

    def take(self) -> tuple[int, int] | None:
        """The next ``(owner, item)`` to run, or None when every waiting owner is at its cap
        (or nothing waits). Call ``done`` with it when the run ends."""
        free = [owner for owner in self._waiting if self._running[owner] < self.per_owner]
        if not free:
            return None
        owner = min(free, key=lambda owner: self._served.get(owner, 0))  # first of equals
        items = self._waiting[owner]
        item = items.popleft()
        if not items:
            del self._waiting[owner]
        self._takes += 1
        self._served[owner] = self._takes
        self._running[owner] += 1
        return owner, item

    def done(self, owner: int, item: int) -> None:
        self._running[owner] -= 1
        if self._running[owner] <= 0:
            del self._running[owner]
            if owner not in self._waiting:
                del self._served[owner]  # gone from the queue: back later as a newcomer
        self._known.discard(item)

    def ready(self) -> int:
        """How many files could be taken now (each owner up to its free share)."""
        return sum(
            min(len(items), self.per_owner - self._running[owner])
            for owner, items in self._waiting.items()
            if self._running[owner] < self.per_owner
        )

    def __len__(self) -> int:
        """Files waiting (not running)."""
        return sum(len(items) for items in self._waiting.values())
