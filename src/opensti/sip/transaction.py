"""INVITE server transactions of the redirect server (RFC 3261 section 17.2.1).

Over UDP an SBC retransmits an INVITE until it gets an answer (Timer A) and retransmits
its ACK each time the final response reaches it again. A redirect server must answer
a retransmission with the response it already sent, byte for byte (same To-tag, same
Identity), not sign or verify the call again. This module keeps, per listener:

* the transactions still being answered (a verification in progress): a
  retransmission is absorbed (or gets the 100 Trying again), a CANCEL finds them;
* the final responses sent, for 64*T1 = 32 s (Timer H, and J for the CANCEL side):
  a retransmission gets the same bytes, and the ACK of the 3xx/4xx ends the
  transaction. The table is bounded: beyond ``max_completed`` entries the oldest is
  dropped (it is also the closest to expiry), so a flood of distinct INVITEs costs a
  fixed amount of memory; a dropped transaction is only answered afresh if its
  INVITE comes again.

Transactions are matched as RFC 3261 section 17.2.3 says: by the top Via's branch and
sent-by, plus the Call-ID and CSeq number, so a CANCEL and the ACK of a non-2xx
response (which carry the INVITE's branch) find the INVITE's transaction. A request
whose branch lacks the RFC 3261 magic cookie is matched on the whole top Via instead.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from opensti.sip.address import split_list
from opensti.sip.message import SIPRequest

__all__ = [
    "MAX_COMPLETED",
    "TIMER_H",
    "PendingTransaction",
    "ServerTransactions",
    "TransactionKey",
    "TransactionStats",
    "key_of",
    "transaction_key",
]

#: 64*T1 with T1 = 500 ms: how long a completed INVITE transaction waits for its ACK.
TIMER_H = 32.0
#: Completed transactions kept per listener: 32 s of 2,000 calls a second, at about
#: 1 KiB per response (some 64 MiB at most).
MAX_COMPLETED = 65_536

_MAGIC_COOKIE = "z9hG4bK"
_BRANCH = re.compile(r";[ \t]*branch[ \t]*=[ \t]*([^;, \t]+)", re.IGNORECASE)

#: (branch or the whole top Via, sent-by, Call-ID, CSeq number).
TransactionKey = tuple[str, str, str, int]


def transaction_key(request: SIPRequest) -> TransactionKey:
    """The server transaction a (validated) request belongs to, whatever its method."""
    fields = request.headers.get("via")
    top = fields[0] if fields else ""
    if "," in top:  # several Via values in one field: the first is the top one
        top = split_list(top)[0]
    return key_of(top, request.call_id, request.cseq[0])


def key_of(top_via: str, call_id: str, number: int) -> TransactionKey:
    """The key of a request whose top Via value, Call-ID and CSeq number are these."""
    protocol = top_via.partition(";")[0]
    sent_by = protocol.rsplit(None, 1)[-1].lower() if protocol.strip() else ""
    branch = _BRANCH.search(top_via, len(protocol))
    ident = branch.group(1) if branch and branch.group(1).startswith(_MAGIC_COOKIE) else top_via
    return ident, sent_by, call_id, number


class PendingTransaction:
    """An INVITE still being answered: whether it was CANCELled, and its 100 Trying."""

    __slots__ = ("cancelled", "trying")

    def __init__(self) -> None:
        self.cancelled = False
        #: The provisional response sent, resent to a retransmission.
        self.trying: bytes | None = None


@dataclass(frozen=True, slots=True)
class TransactionStats:
    pending: int
    completed: int
    #: Retransmissions answered from the table (or absorbed while pending).
    retransmissions: int
    #: ACKs that ended a transaction.
    acked: int
    #: Completed transactions dropped before their time because the table was full.
    evicted: int


class ServerTransactions:
    """The pending and completed INVITE transactions of one listener (see the module)."""

    def __init__(
        self,
        *,
        lifetime: float = TIMER_H,
        max_completed: int = MAX_COMPLETED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.max_completed = max_completed
        self._clock = clock
        self._pending: dict[TransactionKey, PendingTransaction] = {}
        #: Insertion order is expiry order (one lifetime for all), so expiry pops the front.
        self._completed: collections.OrderedDict[TransactionKey, tuple[float, bytes]] = (
            collections.OrderedDict()
        )
        self._retransmissions = self._acked = self._evicted = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def pending(self, key: TransactionKey) -> PendingTransaction | None:
        return self._pending.get(key)

    def begin(self, key: TransactionKey) -> PendingTransaction:
        transaction = self._pending[key] = PendingTransaction()
        return transaction

    def end(self, key: TransactionKey) -> PendingTransaction | None:
        """Forget a pending transaction (answered or abandoned)."""
        return self._pending.pop(key, None)

    def retransmitted(self) -> None:
        self._retransmissions += 1

    def response(self, key: TransactionKey) -> bytes | None:
        """The final response of a completed transaction still alive, if any."""
        entry = self._completed.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry[0] <= now:
            self._expire(now)
            return None
        return entry[1]

    def complete(self, key: TransactionKey, response: bytes) -> None:
        """Keep the final response sent, for the retransmissions to come."""
        if self.max_completed < 1:
            return
        now = self._clock()
        completed = self._completed
        completed.pop(key, None)  # a key is kept in expiry order: re-added at the end
        completed[key] = (now + self.lifetime, response)
        self._expire(now)
        while len(completed) > self.max_completed:
            completed.popitem(last=False)
            self._evicted += 1

    def acknowledge(self, key: TransactionKey) -> bool:
        """The ACK of the final response: the transaction ends. True if it was known."""
        if self._completed.pop(key, None) is None:
            return False
        self._acked += 1
        return True

    def _expire(self, now: float) -> None:
        completed = self._completed
        while completed:
            oldest = next(iter(completed))
            if completed[oldest][0] > now:
                return
            del completed[oldest]

    def clear(self) -> None:
        self._completed.clear()

    def info(self) -> TransactionStats:
        return TransactionStats(
            pending=len(self._pending),
            completed=len(self._completed),
            retransmissions=self._retransmissions,
            acked=self._acked,
            evicted=self._evicted,
        )
