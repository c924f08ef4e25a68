"""The fault scenarios of issue #13, each a function of a started ``Chain`` and N.

Each scenario feeds N readings to its meters in portions (the meters "measure" them;
the gateway daemon, re-syncing every second, downloads them), injects its fault at
points drawn from the chain's seeded RNG, then ``settle`` drains, probes and counts.
``run_scenario`` is what the tests and ``benchmarks/soak.py`` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import Chain, Counts, HarnessError, Meter, Services

from simulators.testbed import TestbedInfo

CONNECTED = '"connected to '


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _start(c: Chain) -> None:
    c.start_ingest()
    c.start_gateway()


# 1 ------------------------------------------------------------------------------------
def broker_restart(c: Chain, n: int) -> Counts:
    """The broker restarts while the gateway holds a full outbox; ingest reconnects only
    after the gateway has re-published it (ingest is frozen with SIGSTOP meanwhile,
    i.e. its reconnect back-off happens to be the longer one)."""
    before, outage, after = _split(n, 3)
    meter = c.meters[0]
    _start(c)
    c.feed(meter, before)
    c.wait_drained()
    broker = c.services.mosquitto
    broker.stop()
    c.feed(meter, outage)  # downloaded into the outbox while the broker is away
    c.wait_downloaded()
    c.note("outbox rows held", c.outbox_rows())
    connected = c.ingest.count(CONNECTED)
    with c.frozen(c.ingest):
        c.restart_broker_frozen()
        c.wait_published()  # the gateway reconnected and re-published its outbox
    c.ingest.wait_log(CONNECTED, connected + 1, 90)
    c.feed(meter, after)
    return c.settle()


# 2 ------------------------------------------------------------------------------------
def broker_restart_ingest_down(c: Chain, n: int) -> Counts:
    """Ingest is stopped (SIGTERM, graceful); the broker restarts; the gateway publishes
    its outbox and more readings; only then does ingest start again."""
    before, outage, down, after = _split(n, 4)
    meter = c.meters[0]
    _start(c)
    c.feed(meter, before)
    c.wait_drained()
    c.barrier()
    c.ingest.stop()
    broker = c.services.mosquitto
    broker.stop()
    c.feed(meter, outage)
    c.wait_downloaded()
    c.note("outbox rows held", c.outbox_rows())
    c.restart_broker_frozen()
    c.feed(meter, down)  # published after the restart, ingest still down
    c.wait_published()
    c.start_ingest()
    c.feed(meter, after)
    return c.settle()


# 3 ------------------------------------------------------------------------------------
def database_restart(c: Chain, n: int) -> Counts:
    """The project's PostgreSQL stops (``pg_ctl stop -m fast``) twice and starts again:
    once before readings arrive (ingest holds them, unacknowledged, and retries), once
    at a random instant of the stream (mid-write when the instant falls so)."""
    portions = _split(n, 4)
    meter = c.meters[0]
    pg = c.services.postgres
    _start(c)
    c.feed(meter, portions[0])
    c.wait_drained()
    pg.stop()
    c.feed(meter, portions[1])
    c.wait_published()  # ingest has it, cannot store it
    c.ingest.wait_log("database unavailable", 1, 30)
    pg.start()
    stored = c.stored_count()
    c.feed(meter, portions[2])
    c.wait_rows_beyond(stored)
    pg.stop()  # rows of this portion are landing: stop now
    c.wait_published()
    pg.start()
    c.feed(meter, portions[3])
    counts = c.settle()
    counts.evidence["ingest retried a batch"] = c.ingest.count("database unavailable")
    return counts


# 4 ------------------------------------------------------------------------------------
def ingest_sigkill(c: Chain, n: int, kills: int = 10) -> Counts:
    """Ingest is SIGKILLed ``kills`` times while readings stream, at random points (just
    after new records reach the meter, once the gateway downloaded them, or as soon as
    the first of them are committed), and restarted each time."""
    meter = c.meters[0]
    _start(c)
    for portion in _split(n, kills):
        stored = c.stored_count()
        c.feed(meter, portion)
        point = c.rng.choice(["fed", "downloaded", "committing"])
        if point == "downloaded":
            c.wait_downloaded()
        elif point == "committing":
            c.wait_rows_beyond(stored)
        c.ingest.kill()
        c.note(f"kills ({point})")
        c.start_ingest()
    return c.settle()


def ingest_sigkill_shared(c: Chain, n: int, kills: int = 6) -> Counts:
    """Two ingest workers share the group (docs/scaling.md); one of them is SIGKILLed
    ``kills`` times during the stream and restarted, the other runs throughout (the
    case of mosquitto issue 2662: a shared subscriber's in-flight messages)."""
    meter = c.meters[0]
    other = c.add_ingest_worker()
    _start(c)
    c.start_ingest(other)
    for portion in _split(n, kills):
        stored = c.stored_count()
        c.feed(meter, portion)
        victim = c.rng.choice([c.ingest, other])
        if c.rng.random() < 0.5:
            c.wait_rows_beyond(stored)
        victim.kill()
        c.note(f"kills ({victim.name})")
        c.start_ingest(victim)
    return c.settle()


# 5 ------------------------------------------------------------------------------------
def gateway_sigkill(c: Chain, n: int) -> Counts:
    """The gateway is SIGKILLed at random points of a (slow) download -- 3 times in CI,
    8 in a soak -- and restarted; the meter keeps measuring in between."""
    kills = 3 if n < 1000 else 8
    first, *rest = _split(n, kills + 1)
    meter = c.meters[0]
    c.start_ingest()
    c.feed(meter, first)
    for portion in rest:
        c.start_gateway()
        remaining = c.wait_download_start(meter)
        span = remaining * c.record_interval_s * 1.3 + 0.2
        time.sleep(c.rng.uniform(0.0, span))  # the injection point, not a wait
        c.gateway.kill()
        landed = c.cursors().get(meter.address.upper(), 0) < meter.top
        c.note("kills mid-download" if landed else "kills after download")
        c.feed(meter, portion)
    c.start_gateway()
    return c.settle()


# 6 ------------------------------------------------------------------------------------
def ble_link_cut(c: Chain, n: int) -> Counts:
    """The BLE link drops mid-download -- twice in CI, 6 times in a soak -- alternately
    from the gateway's BlueZ (Device1.Disconnect) and from the meter (it hangs up)."""
    cuts = 2 if n < 1000 else 6
    meter = c.meters[0]
    first, *rest = _split(n, cuts + 1)
    _start(c)
    c.feed(meter, first)
    for i, portion in enumerate(rest):
        c.feed(meter, portion)
        remaining = c.wait_download_start(meter)
        if remaining == 0:
            c.note("cuts skipped (nothing left to download)")
            continue
        # the injection point: within the first 80 % of the records' transfer
        time.sleep(c.rng.uniform(0.05, 0.05 + 0.8 * remaining * c.record_interval_s))
        try:
            c.cut_link(meter, from_device=i % 2 == 1)
        except HarnessError as exc:  # the session ended just before the cut
            c.say(f"[{c.name}] cut {i} missed: {exc}")
    counts = c.settle()
    counts.evidence["links lost mid-download"] = c.device_errors("link_lost")
    return counts


# 7 ------------------------------------------------------------------------------------
def repair_redownload(c: Chain, n: int) -> Counts:
    """Everything is delivered; then the gateway's state is wiped (new SD card), the
    meter is paired again and its whole memory downloaded again."""
    before, after = _split(n, 2)
    meter = c.meters[0]
    _start(c)
    c.feed(meter, before)
    c.wait_drained()
    c.barrier()
    c.gateway.stop()
    c.wipe_gateway_state()
    c.pair(meter)
    c.start_gateway()
    c.feed(meter, after)
    return c.settle()


# 8 ------------------------------------------------------------------------------------
def skew_change(c: Chain, n: int, move_s: float) -> Counts:
    """The meter's clock is moved by ``move_s`` between two syncs; readings measured
    after the move carry the new clock."""
    before, after = _split(n, 2)
    meter = c.meters[0]
    _start(c)
    c.feed(meter, before)
    c.wait_drained()
    meter.set_skew(meter.skew_s + move_s)
    c.feed(meter, after)
    return c.settle()


# 9 ------------------------------------------------------------------------------------
def mixed(c: Chain, n: int) -> Counts:
    """Two meters; every fault above once, in a seeded random order, readings streaming
    throughout.  The verdict is also taken after each fault: a re-pair's full download
    later in the run must not hide readings that were missing (or doubled) meanwhile."""
    phases: list[Callable[[Chain, list[Meter], int], None]] = [
        _phase_ingest_kills,
        _phase_broker_restart,
        _phase_database_restart,
        _phase_gateway_kill,
        _phase_link_cut,
        _phase_skew_jump,
        _phase_repair,
    ]
    c.rng.shuffle(phases)
    c.say(f"[{c.name}] order: {', '.join(p.__name__.removeprefix('_phase_') for p in phases)}")
    portions = _split(n, len(phases) + 1)
    _start(c)
    for meter, k in zip(c.meters, _split(portions[0], len(c.meters)), strict=True):
        c.feed(meter, k)
    failed: list[str] = []
    for phase, portion in zip(phases, portions[1:], strict=True):
        phase(c, c.meters, portion)
        checkpoint = c.settle()
        if not checkpoint.ok:
            failed.append(f"after {phase.__name__.removeprefix('_phase_')}: {checkpoint.line()}")
    counts = c.settle()
    counts.checkpoints_failed = failed
    return counts


def _feed_all(c: Chain, meters: list[Meter], n: int) -> None:
    for meter, k in zip(meters, _split(n, len(meters)), strict=True):
        c.feed(meter, k)


def _phase_ingest_kills(c: Chain, meters: list[Meter], n: int) -> None:
    for portion in _split(n, 2):
        _feed_all(c, meters, portion)
        if c.rng.random() < 0.5:
            c.wait_downloaded()
        c.ingest.kill()
        c.start_ingest()


def _phase_broker_restart(c: Chain, meters: list[Meter], n: int) -> None:
    c.wait_drained()
    c.services.mosquitto.stop()
    _feed_all(c, meters, n)
    c.wait_downloaded()
    connected = c.ingest.count(CONNECTED)
    with c.frozen(c.ingest):
        c.restart_broker_frozen()
        c.wait_published()
    c.ingest.wait_log(CONNECTED, connected + 1, 90)


def _phase_database_restart(c: Chain, meters: list[Meter], n: int) -> None:
    _feed_all(c, meters, n)
    c.services.postgres.stop()
    c.wait_published()
    c.services.postgres.start()


def _phase_gateway_kill(c: Chain, meters: list[Meter], n: int) -> None:
    c.gateway.kill()
    _feed_all(c, meters, n)
    c.start_gateway()
    remaining = c.wait_download_start(meters[0])
    time.sleep(c.rng.uniform(0.0, remaining * c.record_interval_s + 0.2))  # the injection point
    c.gateway.kill()
    c.start_gateway()


def _phase_link_cut(c: Chain, meters: list[Meter], n: int) -> None:
    _feed_all(c, meters, n)
    meter = c.rng.choice(meters)
    remaining = c.wait_download_start(meter)
    if remaining == 0:
        return
    time.sleep(c.rng.uniform(0.05, 0.05 + 0.8 * remaining * c.record_interval_s))
    try:
        c.cut_link(meter, from_device=c.rng.random() < 0.5)
    except HarnessError as exc:
        c.say(f"[{c.name}] cut missed: {exc}")


def _phase_skew_jump(c: Chain, meters: list[Meter], n: int) -> None:
    c.wait_drained()
    meter = c.rng.choice(meters)
    meter.set_skew(meter.skew_s + 3600)
    _feed_all(c, meters, n)


def _phase_repair(c: Chain, meters: list[Meter], n: int) -> None:
    c.wait_drained()
    c.gateway.stop()
    c.wipe_gateway_state()
    for meter in meters:
        c.pair(meter)
    _feed_all(c, meters, n)
    c.start_gateway()


# -- registry --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    run: Callable[[Chain, int], Counts]
    meters: int = 1
    record_interval_s: float = 0.0  # a slow meter: downloads long enough to interrupt
    ci: bool = True  # False: only in the soak (keeps the CI file near 4 minutes)
    # Evidence the fault landed (``Counts.evidence``): at least these counts.
    requires: tuple[tuple[str, int], ...] = ()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("broker-restart", broker_restart, requires=(("outbox rows held", 1),)),
        Scenario(
            "broker-restart-ingest-down",
            broker_restart_ingest_down,
            requires=(("outbox rows held", 1),),
        ),
        Scenario("database-restart", database_restart, requires=(("ingest retried a batch", 1),)),
        Scenario("ingest-sigkill", ingest_sigkill),
        Scenario("ingest-sigkill-shared", ingest_sigkill_shared, ci=False),
        Scenario(
            "gateway-sigkill",
            gateway_sigkill,
            record_interval_s=0.01,
            requires=(("kills mid-download", 1),),
        ),
        Scenario(
            "ble-link-cut",
            ble_link_cut,
            record_interval_s=0.01,
            requires=(("links lost mid-download", 1),),
        ),
        Scenario("repair-redownload", repair_redownload),
        Scenario("skew-jump", lambda c, n: skew_change(c, n, 3600)),
        Scenario("skew-drift", lambda c, n: skew_change(c, n, 20)),
        Scenario("mixed", mixed, meters=2, record_interval_s=0.005),
    ]
}


def run_scenario(
    name: str,
    bed: TestbedInfo,
    services: Services,
    workdir: Path,
    adapters: list[str],
    readings: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> Counts:
    scenario = SCENARIOS[name]
    chain = Chain(
        name,
        bed,
        services,
        workdir,
        adapters,
        total_readings=readings,
        seed=seed,
        record_interval_s=scenario.record_interval_s,
        log=log,
    )
    try:
        chain.setup(meters=scenario.meters)
        counts = scenario.run(chain, readings)
    except BaseException:
        log(f"[{name}] gateway log tail:\n{chain.gateway.tail()}")
        log(f"[{name}] ingest log tail:\n{chain.ingest.tail()}")
        raise
    finally:
        chain.close()
        # A scenario that stopped a service must not leave it stopped for the next one.
        services.mosquitto.start()
        services.postgres.start()
    log(counts.line())
    for example in counts.examples:
        log(f"    {example}")
    return counts
