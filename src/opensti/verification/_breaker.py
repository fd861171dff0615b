"""A circuit breaker per repository host, so a dead repository fails fast."""

from __future__ import annotations

from dataclasses import dataclass

from opensti.core.errors import BadIdentityInfo

__all__ = ["CircuitBreaker", "RepositoryUnavailable"]


class RepositoryUnavailable(BadIdentityInfo):
    """The x5u host failed repeatedly and is not tried again until its cool-down ends."""


@dataclass(slots=True)
class _HostState:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreaker:
    """After ``threshold`` consecutive failures a host is skipped for ``cooldown`` s.

    When the cool-down ends one attempt goes through (half-open): success closes the
    circuit, one more failure opens it again for another cool-down.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, maxhosts: int = 4096) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._maxhosts = maxhosts
        self._hosts: dict[str, _HostState] = {}
        self.rejected = 0

    def check(self, host: str, now: float) -> None:
        """Raise :class:`RepositoryUnavailable` while ``host``'s circuit is open."""
        state = self._hosts.get(host)
        if state is not None and now < state.open_until:
            self.rejected += 1
            raise RepositoryUnavailable(
                f"x5u host {host} failed {state.failures} times in a row; "
                f"not retried for {state.open_until - now:.0f} s",
                value=host,
            )

    def success(self, host: str) -> None:
        self._hosts.pop(host, None)

    def failure(self, host: str, now: float) -> None:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self._maxhosts:
                self._hosts.pop(next(iter(self._hosts)))
            state = self._hosts[host] = _HostState()
        state.failures += 1
        if state.failures >= self.threshold:
            state.open_until = now + self.cooldown

    def open_hosts(self, now: float) -> list[str]:
        return [host for host, state in self._hosts.items() if now < state.open_until]
