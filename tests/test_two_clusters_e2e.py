"""Two clusters, one gateway (issue 26): two API servers, an operator in each with its own owner
id, one emulated gateway. A poller reads the gateway all along and checks, at every poll, that
it meets the need of every route either cluster still has; once no route is left, that it holds
its originals and no claim tag."""

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from appgw_sse import EXAMPLES
from appgw_sse.core import claims as cl
from appgw_sse.core import document as doc
from tests.support import cluster as clusters
from tests.support.e2e import GATEWAY_ID, Emulator, Operator, Rig, route_manifest, wait_for

SETTING = "notifications-http"
ORIGINAL = (30, True)  # the example gateway's requestTimeout and response buffering
NEEDS = {"90s": 135, "45s": 68, "100s": 150, "120s": 180, "20s": 30}


def state(document: dict[str, Any]) -> tuple[int, bool]:
    return doc.backend_setting_timeouts(document)[SETTING], doc.response_buffering_enabled(document)


def claim_tags(document: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (document.get("tags") or {}).items() if cl.ours(k)}


@dataclass
class Invariant:
    """The routes the gateway must serve now (cluster/route -> requestTimeout), and a poller
    that checks the gateway against them at every read until stopped."""

    emulator: Emulator
    live: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    polls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def needs(self, key: str, timeout: int) -> None:
        with self._lock:
            self.live[key] = timeout

    def gone(self, key: str) -> None:
        """Called before the route is deleted: from then on the gateway may go below it."""
        with self._lock:
            self.live.pop(key, None)

    def check(self) -> None:
        with self._lock:
            live = dict(self.live)
        timeout, buffering = state(self.emulator.gateway())
        self.polls += 1
        if live and (timeout < max(live.values()) or buffering):
            self.violations.append(
                f"gateway at {timeout}s, buffering {'on' if buffering else 'off'} while "
                f"{live} are live"
            )

    def run(self) -> None:
        while not self._stop.wait(0.05):
            self.check()

    @contextlib.contextmanager
    def polling(self) -> Iterator[None]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=10)
        assert self.polls > 20, "the poller hardly ran"
        assert self.violations == [], "\n".join(self.violations[:10])


@dataclass
class Pair:
    emulator: Emulator
    rigs: dict[str, Rig]
    operators: dict[str, Operator]
    invariant: Invariant

    def start(self, owner: str) -> Operator:
        self.operators[owner] = self.rigs[owner].operator("--owner-id", owner)
        return self.operators[owner]

    def apply(self, owner: str, name: str, idle: str) -> None:
        rig = self.rigs[owner]
        rig.apply(route_manifest(name, settings=(SETTING,), idle=idle))
        rig.wait_condition("shop", name, "True", "Applied", timeout=60)
        self.invariant.needs(f"{owner}/{name}", NEEDS[idle])

    def delete(self, owner: str, name: str) -> None:
        self.invariant.gone(f"{owner}/{name}")
        self.rigs[owner].kubectl("delete", "sser", "-n", "shop", name, "--wait=false")

    def released(self, owner: str, name: str) -> None:
        rig = self.rigs[owner]
        wait_for(f"{owner}/{name} released", lambda: rig.route("shop", name) is None, timeout=60)

    def gateway(self) -> dict[str, Any]:
        return self.emulator.gateway()

    def originals_back(self) -> None:
        """No route left anywhere: the originals, no claim tag, the user's tags as they were."""
        wait_for(
            "the originals and no claim tags",
            lambda: state(self.gateway()) == ORIGINAL and not claim_tags(self.gateway()),
            timeout=60,
        )
        assert self.gateway()["tags"] == {"env": "prod", "team": "platform"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("two-clusters")
    seeds = workdir / "seeds.json"
    seeds.write_text((EXAMPLES / "gateway.json").read_text())
    emulator = Emulator(workdir, [seeds], lro_seconds=1.0)
    try:
        with contextlib.ExitStack() as stack:
            rigs = {}
            for owner in ("blue", "green"):
                (workdir / owner).mkdir()
                cluster = stack.enter_context(clusters.running(workdir / owner))
                rigs[owner] = Rig(workdir / owner, cluster, emulator)
            pair = Pair(emulator, rigs, {}, Invariant(emulator))
            try:
                for owner in rigs:
                    pair.start(owner)
                yield pair
                for rig in rigs.values():
                    rig.check_operator_behaved()
            finally:
                for rig in rigs.values():
                    for operator in rig.operators:
                        operator.stop()
    finally:
        emulator.stop()


@pytest.fixture
def invariant(pair: Pair) -> Iterator[Invariant]:
    assert state(pair.gateway()) == ORIGINAL and not claim_tags(pair.gateway())
    pair.invariant = Invariant(pair.emulator)
    with pair.invariant.polling():
        yield pair.invariant


@pytest.mark.parametrize("first", ["blue", "green"])
def test_deleting_one_clusters_route_keeps_the_others_need(
    pair: Pair, invariant: Invariant, first: str
) -> None:
    """The issue's scenarios: blue needs 90 s idle (135 s), green 45 s (68 s)."""
    pair.apply("blue", "a", "90s")
    pair.apply("green", "b", "45s")
    assert state(pair.gateway()) == (135, False)
    tags = claim_tags(pair.gateway())
    assert tags["appgw-sse.originals"].endswith(f";buffering=on;timeout:{SETTING}=30")
    assert tags["appgw-sse.claim.green"] == f"buffering=off;timeout:{SETTING}=68"
    second, route = ("green", "b") if first == "blue" else ("blue", "a")
    pair.delete(first, "a" if first == "blue" else "b")
    pair.released(first, "a" if first == "blue" else "b")
    expected = 68 if first == "blue" else 135
    wait_for("the remaining need", lambda: state(pair.gateway()) == (expected, False))
    assert list(cl.parse(claim_tags(pair.gateway()))[0].needs) == [second]
    pair.delete(second, route)
    pair.released(second, route)
    pair.originals_back()


def test_both_clusters_changing_at_once(pair: Pair, invariant: Invariant) -> None:
    pair.apply("blue", "a", "90s")
    pair.apply("green", "b", "45s")
    # Each route sees the other cluster's claim in its status.
    seen = pair.rigs["green"].route("shop", "b") or {}
    assert seen["status"]["gateway"]["claims"] == [
        {"owner": "blue", "needs": f"response buffering disabled; {SETTING} requestTimeout 135s"}
    ]
    # Blue lowers its need while green raises its own, at once.
    invariant.gone("blue/a")
    pair.rigs["blue"].apply(route_manifest("a", settings=(SETTING,), idle="20s"))
    pair.rigs["green"].apply(route_manifest("b", settings=(SETTING,), idle="120s"))
    pair.rigs["green"].wait_condition("shop", "b", "True", "Applied", timeout=60)
    invariant.needs("green/b", 180)
    pair.rigs["blue"].wait_condition("shop", "a", "True", "Applied", timeout=60)
    invariant.needs("blue/a", 30)  # its original: still buffering off
    wait_for("green's 180 s", lambda: state(pair.gateway()) == (180, False))
    # Both deleted at once.
    pair.delete("blue", "a")
    pair.delete("green", "b")
    pair.released("blue", "a")
    pair.released("green", "b")
    pair.originals_back()


def test_a_delete_while_the_other_clusters_put_is_in_flight(
    pair: Pair, invariant: Invariant
) -> None:
    pair.apply("blue", "a", "90s")
    pair.apply("green", "b", "45s")
    # Blue's next PUT (100 s idle) is held 4 s; green's route is deleted meanwhile.
    pair.emulator.admin("POST", "faults", [{"method": "PUT", "status": 0, "delay": 4}])
    pair.rigs["blue"].apply(route_manifest("a", settings=(SETTING,), idle="100s"))
    wait_for(
        "blue's PUT held",
        lambda: all(f["count"] == 0 for f in pair.emulator.admin("GET", "faults")),
    )
    pair.delete("green", "b")
    pair.rigs["blue"].wait_condition("shop", "a", "True", "Applied", timeout=60)
    invariant.needs("blue/a", 150)
    pair.released("green", "b")
    wait_for("blue's need alone", lambda: state(pair.gateway()) == (150, False))
    assert list(cl.parse(claim_tags(pair.gateway()))[0].needs) == ["blue"]
    pair.delete("blue", "a")
    pair.released("blue", "a")
    pair.originals_back()


def test_an_operator_restarted_while_the_other_cluster_deletes(
    pair: Pair, invariant: Invariant
) -> None:
    pair.apply("blue", "a", "90s")
    pair.apply("green", "b", "45s")
    pair.operators["blue"].stop(signal.SIGKILL)
    pair.delete("green", "b")
    pair.released("green", "b")
    assert state(pair.gateway()) == (135, False)  # blue's claim stands without its operator
    pair.start("blue")
    pair.delete("blue", "a")
    pair.released("blue", "a")
    pair.originals_back()


def claims_command(pair: Pair, *args: str) -> subprocess.CompletedProcess[str]:
    ready = pair.emulator.ready
    arm = ["--arm-endpoint", pair.emulator.url, "--arm-ca-bundle", ready["ca_bundle"]]
    arm += ["--arm-token-file", ready["token_file"]]
    return subprocess.run(
        [sys.executable, "-m", "appgw_sse", "claims", *args, "--gateway", GATEWAY_ID, *arm],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_claim_of_a_cluster_that_is_gone_is_released_by_the_command(
    pair: Pair, invariant: Invariant
) -> None:
    pair.apply("blue", "a", "90s")
    pair.apply("green", "b", "45s")
    # Blue's cluster goes away for good: its operator never runs again, its route is moot.
    pair.operators["blue"].stop(signal.SIGKILL)
    invariant.gone("blue/a")
    listed = claims_command(pair, "list")
    assert listed.returncode == 0, listed.stderr
    assert f"blue: response buffering disabled; {SETTING} requestTimeout 135s" in listed.stdout
    dry = claims_command(pair, "release", "--owner", "blue", "--dry-run")
    assert dry.returncode == 2, dry.stderr
    assert f"[{SETTING}].requestTimeout 135 -> 68" in dry.stdout
    assert state(pair.gateway()) == (135, False)
    done = claims_command(pair, "release", "--owner", "blue")
    assert done.returncode == 0, done.stderr
    wait_for("green's need alone", lambda: state(pair.gateway()) == (68, False))
    assert list(cl.parse(claim_tags(pair.gateway()))[0].needs) == ["green"]
    pair.delete("green", "b")
    pair.released("green", "b")
    pair.originals_back()
    # Blue's cluster is gone: its route goes with it.
    blue = pair.rigs["blue"]
    blue.kubectl(
        "patch", "sser", "-n", "shop", "a", "--type=merge", "-p", '{"metadata":{"finalizers":[]}}'
    )
    blue.kubectl("delete", "sser", "-n", "shop", "a", "--wait=false")
