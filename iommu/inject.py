"""Injection points of the root complex as a completer (``rc.inject``), for verification.

Each arms a one-shot fault that the root complex carries out on the next memory read from
one requester ID, and returns a :class:`CompletionFault` that says whether and on which read
it fired: the completion is withheld (a completer that never answers: the requester's
Completion Timeout), sent late, or sent with poisoned data.
"""

from __future__ import annotations

from dataclasses import dataclass

WITHHOLD = "withhold"
DELAY = "delay"
POISON = "poison"


@dataclass
class CompletionFault:
    """One armed fault on the next read from ``rid``; ``address`` is the read it fired on."""

    rid: int
    kind: str
    delay_ns: int = 0
    fired: bool = False
    address: int | None = None


class CompletionFaults:
    def __init__(self):
        self._armed: dict[int, CompletionFault] = {}

    def _arm(self, fault: CompletionFault) -> CompletionFault:
        self._armed[fault.rid] = fault
        return fault

    def withhold_completion(self, rid: int) -> CompletionFault:
        """The next read from ``rid`` is never completed."""
        return self._arm(CompletionFault(rid, WITHHOLD))

    def delay_completion(self, rid: int, delay_ns: int) -> CompletionFault:
        """The completions of the next read from ``rid`` leave ``delay_ns`` late."""
        return self._arm(CompletionFault(rid, DELAY, delay_ns))

    def poison_completion(self, rid: int) -> CompletionFault:
        """The first completion of the next read from ``rid`` carries poisoned data (EP set)."""
        return self._arm(CompletionFault(rid, POISON))

    def __bool__(self) -> bool:
        """Whether any fault is armed."""
        return bool(self._armed)

    def take(self, rid: int, address: int) -> CompletionFault | None:
        """The fault armed for a read from ``rid`` at ``address``, now fired; None if none."""
        fault = self._armed.pop(rid, None)
        if fault is not None:
            fault.fired, fault.address = True, address
        return fault
