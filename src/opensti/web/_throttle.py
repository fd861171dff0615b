"""Sign-in throttling: after a few failed attempts for one user name or from one client
address, further attempts are refused for a delay that doubles with each failure.

Both counters must be clear for an attempt to be checked at all, so a locked name
cannot be guessed at from many addresses, nor many names from one address. A
successful sign-in clears both. The counters live in this process (bounded, oldest
dropped first): each node of a multi-node install counts on its own.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["SignInThrottle", "ThrottlePolicy"]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    #: Failures allowed before the first delay.
    free_attempts: int = 5
    #: The first delay; each further failure doubles it.
    first_delay: dt.timedelta = dt.timedelta(seconds=2)
    longest_delay: dt.timedelta = dt.timedelta(minutes=15)
    #: Most names and addresses remembered.
    capacity: int = 10_000

    def delay(self, failures: int) -> dt.timedelta:
        if failures < self.free_attempts:
            return dt.timedelta(0)
        doublings = min(failures - self.free_attempts, 30)
        delay: dt.timedelta = self.first_delay * (1 << doublings)
        return min(delay, self.longest_delay)


@dataclass(slots=True)
class _Record:
    failures: int
    until: dt.datetime


class SignInThrottle:
    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("user", name.casefold())]
        if address:
            keys.append(("address", address))
        return keys

    def wait(self, name: str, address: str | None, now: dt.datetime) -> int:
        """Whole seconds before this name from this address may try again (0: now)."""
        waits = [
            (record.until - now).total_seconds()
            for key in self._keys(name, address)
            if (record := self._records.get(key)) is not None
        ]
        return max(0, math.ceil(max(waits, default=0)))

    def failed(self, name: str, address: str | None, now: dt.datetime) -> None:
        for key in self._keys(name, address):
            record = self._records.pop(key, None) or _Record(0, now)
            record.failures += 1
            record.until = now + self.policy.delay(record.failures)
            self._records[key] = record
        while len(self._records) > self.policy.capacity:
            self._records.popitem(last=False)

    def succeeded(self, name: str, address: str | None) -> None:
        for key in self._keys(name, address):
            self._records.pop(key, None)
