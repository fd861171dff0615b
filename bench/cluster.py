"""Scale-out figures: how soon a renewal signs on another node, and how soon a dead
worker's entries are taken over.

    .venv/bin/python bench/cluster.py                     # throwaway PostgreSQL cluster
    .venv/bin/python bench/cluster.py --renewals 10 --postgres-url postgresql://...

1. PostgreSQL: two ``opensti serve`` nodes, A with the reconcile loop and B with
   ``--no-worker``; N renewals requested on A; for each, the time from the activation
   recorded in the store to the first call B signs with the new certificate.
2. SQLite: one node; N renewals made by ``opensti cert renew --now`` in another process.
3. PostgreSQL: three ``opensti worker`` processes, ten entries with 40-second
   certificates; one worker killed with SIGKILL mid-renewal; the time from the kill to
   another worker's first step on each entry it held, against the lease TTL.

Needs the sandbox (built in) and, without --postgres-url, Debian's PostgreSQL server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._databases import PostgresServer, throwaway_cluster
from tests.lifecycle.cluster_support import (
    activations,
    first_event_after,
    kill_one_worker_mid_renewal,
    order_overlaps,
    renew_elsewhere,
    signing_node,
    wait_for_renewal,
)
from tests.lifecycle.reconcile_support import World, start_world

TEN_SPCS = tuple(f"{n}A" for n in range(100, 110))


def _renewal_lags(world: World, renewals: int) -> list[float]:
    lags = []
    with signing_node(world) as (signer, current):
        for _ in range(renewals):
            renew_elsewhere(world)
            renewal = wait_for_renewal(world, signer, current)
            lags.append(renewal.lag)
            current = renewal.x5u
    return lags


def _report_lags(label: str, lags: list[float]) -> None:
    print(
        f"{label}: {len(lags)} renewals; activation -> signing on the serve node: "
        f"median {statistics.median(lags) * 1000:.0f} ms, worst {max(lags) * 1000:.0f} ms"
    )


def _takeover(world: World, lease_ttl: float) -> None:
    run = kill_one_worker_mid_renewal(world, TEN_SPCS, lease_ttl=lease_ttl)
    renewals = sum(len(times) - 1 for times in activations(world).values())
    print(
        f"3 workers, {len(TEN_SPCS)} entries, 40 s certificates: {renewals} renewals, "
        f"overlapping orders: {len(order_overlaps(world))}"
    )
    for entry_id, expires in sorted(run.held.items()):
        taken = first_event_after(world, entry_id, run.killed_at)
        print(
            f"  entry {entry_id} held by the killed worker: lease ran out "
            f"{(expires - run.killed_at).total_seconds():.2f} s after the kill "
            f"(TTL {lease_ttl:.1f} s), taken over after "
            f"{(taken - run.killed_at).total_seconds():.2f} s"
        )


@contextmanager
def _postgres(url: str | None) -> Iterator[PostgresServer]:
    with ExitStack() as stack:
        server = PostgresServer(url or stack.enter_context(throwaway_cluster()))
        stack.callback(server.close)
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renewals", type=int, default=5)
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--postgres-url", help="a PostgreSQL server whose user may create DBs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _postgres(args.postgres_url) as server:
        root = Path(tmp)
        with (
            server.database() as url,
            start_world(root / "pg", repository=False, database_url=url) as world,
        ):
            world.add_entries("123H")
            lags = _renewal_lags(world, args.renewals)
            _report_lags("PostgreSQL, renewed on A, signing on B", lags)
        with start_world(root / "sqlite", repository=False) as world:
            world.add_entries("123H")
            lags = _renewal_lags(world, args.renewals)
            _report_lags("SQLite, renewed by the CLI, 1 serve node", lags)
        with (
            server.database() as url,
            start_world(
                root / "workers",
                repository=False,
                database_url=url,
                spcs=TEN_SPCS,
                cert_validity=dt.timedelta(seconds=40),
            ) as world,
        ):
            world.add_entries(*TEN_SPCS)
            _takeover(world, args.lease_ttl)


if __name__ == "__main__":
    main()
