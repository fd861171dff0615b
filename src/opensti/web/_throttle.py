"""Sign-in throttling: after a few failed attempts for one user name or from one client
address, further attempts are refused for a delay that doubles with each failure.

Both counters must be clear for an attempt to be checked at all, so a locked name
cannot be guessed at from many addresses, nor many names from one address. Each
attempt is counted as a failure, atomically, before its password is checked (a
success clears both counters), so parallel guesses cannot all slip in between the
check and the count. The counters live in the database, so every node of
a multi-node install counts the same failures; counters idle for a day are forgotten,
and at most ``capacity`` are kept.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from opensti.store import (
    Database,
    SignInKey,
    charge_sign_in_attempt,
    clear_sign_in_failures,
    prune_sign_in_failures,
)

__all__ = ["SignInThrottle", "ThrottlePolicy"]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    #: Failures allowed before the first delay.
    free_attempts: int = 5
    #: The first delay; each further failure doubles it.
    first_delay: dt.timedelta = dt.timedelta(seconds=2)
    longest_delay: dt.timedelta = dt.timedelta(minutes=15)
    #: A counter this long past its deadline is forgotten.
    forget_after: dt.timedelta = dt.timedelta(days=1)
    #: Most names and addresses remembered.
    capacity: int = 10_000

    def delay(self, failures: int) -> dt.timedelta:
        if failures < self.free_attempts:
            return dt.timedelta(0)
        doublings = min(failures - self.free_attempts, 30)
        delay: dt.timedelta = self.first_delay * (1 << doublings)
        return min(delay, self.longest_delay)


class _Refused(Exception):
    """Rolls the attempt's transaction back: a refused attempt changes no counter."""

    def __init__(self, wait: dt.timedelta) -> None:
        super().__init__()
        self.wait = wait


class SignInThrottle:
    def __init__(self, database: Database, policy: ThrottlePolicy | None = None) -> None:
        self.database = database
        self.policy = policy or ThrottlePolicy()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[SignInKey]:
        keys = [("user", name.casefold())]
        if address:
            keys.append(("address", address))
        return keys

    def begin(self, name: str, address: str | None, clock: Callable[[], dt.datetime]) -> int:
        """Charge one attempt: 0 if its password may be checked, else the whole
        seconds before this name from this address may try again."""
        try:
            with self.database.session() as session:
                now, until = charge_sign_in_attempt(
                    session, self._keys(name, address), clock, self.policy.delay
                )
                if until is not None:
                    raise _Refused(until - now)
        except _Refused as refused:
            return max(1, math.ceil(refused.wait.total_seconds()))
        return 0

    def failed(self, now: dt.datetime) -> None:
        """After a wrong password (already counted): forget old counters. A transaction
        of its own, after the counters' row locks were given back."""
        with self.database.session() as session:
            prune_sign_in_failures(session, now - self.policy.forget_after, self.policy.capacity)

    def succeeded(self, name: str, address: str | None) -> None:
        with self.database.session() as session:
            clear_sign_in_failures(session, self._keys(name, address))
