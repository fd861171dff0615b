"""/metrics in the Prometheus text format, read back with Prometheus's own client
parser; with several workers, one scrape answers for every process."""

from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from opensti.metrics import Counter, Gauge, Metrics, SharedMetrics, labels
from opensti.prefork import SlotBoard


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels; fails if a family is split in two groups
    (a scraper refuses a second TYPE line for one name)."""
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), names
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def _worker(metrics: Metrics, signed: int, latency: float) -> Metrics:
    for _ in range(signed):
        metrics.signed.inc_at(labels(outcome="signed"))
        metrics.latency.observe_at(labels(kind="sign"), latency)
    return metrics


def test_a_lone_process_renders_its_own_series_without_a_worker_label() -> None:
    metrics = _worker(Metrics(), 3, 0.002)
    samples = _samples(metrics.render())
    assert samples[("opensti_calls_signed_total", (("outcome", "signed"),))] == 3
    assert samples[("opensti_request_seconds_count", (("kind", "sign"),))] == 3


def test_counts_past_a_million_keep_every_digit() -> None:
    metrics = Metrics()
    metrics.signed.inc_at(labels(outcome="signed"), 1_234_567)
    metrics.latency.observe_at(labels(kind="sign"), 1234.5678)
    text = metrics.render()
    assert 'opensti_calls_signed_total{outcome="signed"} 1234567\n' in text
    assert 'opensti_request_seconds_sum{kind="sign"} 1234.5678\n' in text


def test_one_scrape_answers_for_every_worker() -> None:
    board = SlotBoard(3, 64 * 1024)
    workers = [_worker(Metrics(), n, 0.001 * (n + 1)) for n in (5, 2, 7)]
    shared = [m.share(board, n) for n, m in enumerate(workers)]
    for worker in shared:
        assert worker.publish(now=100.0)
    workers[0].signed.inc_at(labels(outcome="signed"))  # not published yet: live
    for answering in range(3):
        samples = _samples(shared[answering].render(now=101.0))
        key = "opensti_calls_signed_total"
        counts = [samples[(key, (("outcome", "signed"), ("worker", str(n))))] for n in range(3)]
        # The answering process's own series are live; the others' as published.
        assert counts == [6 if answering == 0 else 5, 2, 7]
        bucket = "opensti_request_seconds_bucket"
        assert samples[(bucket, (("kind", "sign"), ("le", "+Inf"), ("worker", "2")))] == 7


def test_a_worker_silent_too_long_is_left_out() -> None:
    board = SlotBoard(2, 64 * 1024)
    first, second = (_worker(Metrics(), 1, 0.001).share(board, n) for n in range(2))
    second.publish(now=0.0)
    key = ("opensti_calls_signed_total", (("outcome", "signed"), ("worker", "1")))
    assert key in _samples(first.render(now=SharedMetrics.STALE_SECONDS - 1))
    assert key not in _samples(first.render(now=SharedMetrics.STALE_SECONDS + 1))


def test_collected_families_are_shared_too() -> None:
    board = SlotBoard(2, 64 * 1024)
    metrics = [Metrics(), Metrics()]
    for n, m in enumerate(metrics):
        hits = Counter("opensti_x5u_cache_hits_total", "hits", {(): 10.0 * (n + 1)})
        size = Gauge("opensti_x5u_cache_entries", "entries")
        size.set(n + 1)
        m.add_collector(lambda hits=hits, size=size: [hits, size])
    shared = [m.share(board, n) for n, m in enumerate(metrics)]
    shared[1].publish(now=5.0)
    samples = _samples(shared[0].render(now=5.0))
    assert samples[("opensti_x5u_cache_hits_total", (("worker", "0"),))] == 10
    assert samples[("opensti_x5u_cache_hits_total", (("worker", "1"),))] == 20
    assert samples[("opensti_x5u_cache_entries", (("worker", "1"),))] == 2


def test_metrics_too_large_for_the_slot_are_not_published() -> None:
    board = SlotBoard(2, 256)
    metrics = _worker(Metrics(), 1, 0.001)
    assert not metrics.share(board, 1).publish(now=1.0)
    assert board.read(1) is None


def test_a_slot_is_seen_across_a_fork_and_through_its_descriptor() -> None:
    board = SlotBoard(2, 1024)
    pid = os.fork()
    if pid == 0:
        board.write(1, b"from the child", 7.0)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert board.read(1) == (7.0, b"from the child")
    attached = SlotBoard.attach(os.dup(board.fd))
    assert (attached.processes, attached.slot_bytes) == (2, 1024)
    assert attached.read(1) == (7.0, b"from the child")
    assert attached.read(0) is None  # never written
    assert board.write(0, b"x" * 2000, 8.0) is False


def _begin_write(board: SlotBoard, process: int) -> None:
    """What a writer stopped half-way leaves: the copy it overwrites marked odd."""
    copies = board._copies(process)
    numbers = [board._sequence(offset) for offset in copies]
    older = copies[numbers.index(min(numbers))]
    SlotBoard._HEADER.pack_into(board._memory, older, max(numbers) | 1, 0.0, 3)


def test_a_slot_being_written_gives_its_last_finished_copy() -> None:
    """A scrape that meets a worker mid-write still has that worker's series (with one
    copy it had none, and the series vanished from that scrape)."""
    board = SlotBoard(1, 1024)
    board.write(0, b"first", 1.0)
    board.write(0, b"second", 2.0)
    _begin_write(board, 0)
    assert board.read(0) == (2.0, b"second")


def test_each_write_is_read_back_whole_and_newest_first() -> None:
    board = SlotBoard(2, 64)
    for n in range(7):
        assert board.write(1, f"publication {n}".encode(), float(n))
        assert board.read(1) == (float(n), f"publication {n}".encode())
    assert board.read(0) is None


def test_a_slot_left_half_written_is_written_again_first() -> None:
    """A writer killed mid-write leaves its copy odd; the replacement's first write goes
    there, and is then what a reader gets."""
    board = SlotBoard(1, 1024)
    board.write(0, b"before the kill", 1.0)
    _begin_write(board, 0)
    board.write(0, b"from the replacement", 3.0)
    assert board.read(0) == (3.0, b"from the replacement")
    _begin_write(board, 0)  # the copy written before the kill goes next
    assert board.read(0) == (3.0, b"from the replacement")


def test_a_first_write_under_way_reads_as_nothing() -> None:
    board = SlotBoard(1, 1024)
    _begin_write(board, 0)
    assert board.read(0) is None


def test_a_scrape_keeps_a_worker_that_is_publishing_meanwhile() -> None:
    board = SlotBoard(2, 64 * 1024)
    first, second = (_worker(Metrics(), n + 1, 0.001).share(board, n) for n in range(2))
    second.publish(now=1.0)
    _begin_write(board, 1)
    key = ("opensti_calls_signed_total", (("outcome", "signed"), ("worker", "1")))
    assert _samples(first.render(now=2.0))[key] == 2
