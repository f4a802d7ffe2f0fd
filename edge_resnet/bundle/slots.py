"""The A/B slot root on a device: layout, state file, lock, and repair after a power cut.

Layout under the root (``--root``, e.g. ``/var/lib/edge-resnet``)::

    current -> slots/a          the release the runtime runs (a symlink, switched atomically)
    slots/a/, slots/b/          one verified release each: manifest.json, manifest.sig, payload
    state.json                  per-slot record: name, version, state, times, reason; events
    .lock                       flock held by every bundle command
    .staging/, .trash-*/, current.new, state.json.tmp   leftovers of an interrupted command

The symlink says which slot is active; ``state.json`` says what each slot holds and whether it
is ``installing``, ``pending`` (switched to, not yet committed), ``good``, ``failed`` or
``rolled-back``. :func:`repair` turns any state a power cut can leave into a consistent one:
leftovers are removed, a slot still ``installing`` is discarded unless the switch to it already
happened (then it is ``pending``), a ``pending`` slot that is not active was being rolled back
(``failed``), and a pending release past its timeout is rolled back.
Device side: Python 3.8, standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from edge_resnet.bundle import fsops
from edge_resnet.bundle.errors import SlotError

__all__ = ["SLOTS", "SlotRoot", "locked"]

SLOTS = ("a", "b")
STATE_VERSION = 1
_MAX_EVENTS = 50


@dataclass
class SlotRoot:
    """Paths and state of one slot root (no I/O in the constructor)."""

    root: Path

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def slot_dir(self, slot: str) -> Path:
        return self.root / "slots" / slot

    def active_slot(self) -> Optional[str]:
        """The slot ``current`` points at, or None before the first install."""
        if not self.current.is_symlink():
            return None
        target = os.readlink(str(self.current))
        slot = Path(target).name
        if target != f"slots/{slot}" or slot not in SLOTS:
            raise SlotError(f"{self.current} points at {target!r}, not at a slot; it was "
                            "changed by hand: repair it or reinstall")
        return slot

    def inactive_slot(self) -> str:
        return "b" if self.active_slot() == "a" else "a"

    def load_state(self) -> Dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"schema_version": STATE_VERSION, "slots": {}, "events": []}
        except (OSError, ValueError) as exc:
            raise SlotError(f"{self.state_path} is unreadable ({exc}); it is only ever replaced "
                            "atomically, so the disk or a person changed it") from None
        if data.get("schema_version") != STATE_VERSION or not isinstance(data.get("slots"), dict):
            raise SlotError(f"{self.state_path} has an unknown format; upgrade edge-resnet")
        return dict(data)

    def save_state(self, state: Dict[str, Any]) -> None:
        state["events"] = state.get("events", [])[-_MAX_EVENTS:]
        fsops.write_json(self.state_path, state)


def event(state: Dict[str, Any], kind: str, slot: Optional[str], detail: str,
          now: Optional[float] = None) -> None:
    """Append an event (kept in ``state.json``, newest last) so the device log says why."""
    record = state.get("slots", {}).get(slot or "", {})
    state.setdefault("events", []).append({
        "time": _iso(time.time() if now is None else now), "event": kind, "slot": slot,
        "version": record.get("version"), "detail": detail})


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


@contextlib.contextmanager
def locked(root: Path, create: bool = True, wait_s: float = 30.0) -> Iterator[SlotRoot]:
    """Hold the root's lock (one bundle command at a time), creating the root if asked."""
    try:
        if create and not root.is_dir():
            fsops.step("mkdir root")
            root.mkdir(parents=True)
            fsops.fsync_dir(root.parent)
        if not root.is_dir():
            raise SlotError(f"slot root {root} does not exist (nothing installed there yet)")
        fd = os.open(str(root / ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SlotError(f"cannot use slot root {root}: {exc.strerror or exc} (run as the user "
                        "that owns it)") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlotError(f"another bundle command holds {root}/.lock; "
                                    "wait for it to finish") from None
                time.sleep(0.1)
        yield SlotRoot(root)
    finally:
        os.close(fd)


def _remove_leftovers(slots: SlotRoot) -> List[str]:
    removed = []
    names = [".staging", "current.new", "state.json.tmp"]
    names += [p.name for p in slots.root.glob(".trash-*")]
    for name in names:
        path = slots.root / name
        if path.exists() or path.is_symlink():
            fsops.remove_tree(path)
            removed.append(name)
    return removed


def _discard(slots: SlotRoot, slot: str) -> None:
    """Remove a slot's directory via a trash rename (atomic disappearance, then delete)."""
    path = slots.slot_dir(slot)
    if path.exists():
        trash = slots.root / f".trash-{slot}"
        fsops.rename(path, trash)
        fsops.remove_tree(trash)


def roll_back(slots: SlotRoot, state: Dict[str, Any], reason: str, now: float) -> bool:
    """Switch ``current`` to the other slot when it holds a good release; False when none."""
    active = slots.active_slot()
    other = "b" if active == "a" else "a"
    record = state["slots"].get(other)
    if active is None or record is None or record.get("state") != "good" \
            or not slots.slot_dir(other).is_dir():
        return False
    fsops.swap_symlink(slots.current, f"slots/{other}")
    state["slots"][active].update(state="failed", reason=reason)
    event(state, "rollback", active, reason, now)
    slots.save_state(state)
    return True


def repair(slots: SlotRoot, now: Optional[float] = None) -> Dict[str, Any]:
    """Make the root consistent after any interruption; returns the (saved) state."""
    now = time.time() if now is None else now
    state = slots.load_state()
    changed = bool(_remove_leftovers(slots))
    active = slots.active_slot()
    if active is not None and not slots.slot_dir(active).is_dir():
        raise SlotError(f"{slots.current} points at a missing slot; reinstall a release")
    for slot in SLOTS:
        record = state["slots"].get(slot)
        present = slots.slot_dir(slot).is_dir()
        if record is None or not present:
            if slot != active and present:
                _discard(slots, slot)
            if record is not None and slot != active:
                del state["slots"][slot]
                changed = True
            continue
        if record.get("state") == "installing":
            if slot == active:
                record.update(state="pending", pending_since=now)
                event(state, "repair", slot, "switch completed before an interruption: pending",
                      now)
            else:
                event(state, "repair", slot, "interrupted install discarded", now)
                _discard(slots, slot)
                del state["slots"][slot]
            changed = True
        elif record.get("state") == "pending" and slot != active:
            record.update(state="failed", reason="interrupted rollback completed")
            changed = True
    changed = _expire_pending(slots, state, now) or changed
    if changed:
        slots.save_state(state)
    return state


def _expire_pending(slots: SlotRoot, state: Dict[str, Any], now: float) -> bool:
    active = slots.active_slot()
    record = state["slots"].get(active or "")
    if record is None or record.get("state") != "pending":
        return False
    timeout = float(record.get("pending_timeout_s", 0))
    if timeout <= 0 or now - float(record.get("pending_since", now)) <= timeout:
        return False
    reason = f"not committed within {timeout:g} s"
    if roll_back(slots, state, reason, now):
        return True
    if record.get("timeout_noted"):
        return False
    record["timeout_noted"] = True
    event(state, "timeout", active, reason + "; no previous release to return to, kept", now)
    return True
