"""AGIC mode's pure decision: which Ingresses, which annotation values, what is restored."""

import pytest

from appgw_sse.core import agic, conditions
from appgw_sse.core.agic import DRAINING, DRAINING_TIMEOUT, REQUEST_TIMEOUT, Ingress, IngressLedger
from appgw_sse.core.conditions import Reason
from tests.support.gateways import intent


def ing(name: str, service: str = "svc") -> Ingress:
    return Ingress(name, {}, frozenset({service}))


def with_keys(name: str, values: dict[str, str], service: str = "svc") -> Ingress:
    return Ingress(name, values, frozenset({service}))


def test_only_agic_ingresses_are_seen() -> None:
    by_class = {
        "metadata": {"name": "a"},
        "spec": {
            "ingressClassName": "azure-application-gateway",
            "defaultBackend": {"service": {"name": "svc"}},
        },
    }
    by_annotation = {
        "metadata": {
            "name": "b",
            "annotations": {"kubernetes.io/ingress.class": "azure/application-gateway"},
        },
        "spec": {"rules": [{"http": {"paths": [{"backend": {"service": {"name": "other"}}}]}}]},
    }
    nginx = {"metadata": {"name": "c"}, "spec": {"ingressClassName": "nginx"}}
    assert agic.agic_ingress(by_class) == Ingress("a", {}, frozenset({"svc"}))
    found = agic.agic_ingress(by_annotation)
    assert found is not None and found.services == frozenset({"other"})
    assert agic.agic_ingress(nginx) is None


def test_values_are_set_on_the_ingresses_of_the_service_only() -> None:
    routes = [intent("r", drain=120, service="svc")]
    plan = agic.plan_ingresses(routes, [ing("web"), ing("other", service="x")], IngressLedger("ns"))
    assert plan.patches == {
        "web": {REQUEST_TIMEOUT: "68", DRAINING: "true", DRAINING_TIMEOUT: "120"}
    }
    assert plan.served == {"ns/r": ["web"]}
    assert plan.ledger.owned[("web", REQUEST_TIMEOUT)] == agic.Owned(None, "68")


def test_a_higher_value_is_kept_and_not_owned() -> None:
    routes = [intent("r", service="svc")]
    plan = agic.plan_ingresses(
        routes, [with_keys("web", {REQUEST_TIMEOUT: "600"})], IngressLedger("ns")
    )
    assert plan.patches == {} and plan.ledger.is_empty


def test_a_lower_value_is_raised_and_restored_later() -> None:
    routes = [intent("r", service="svc")]
    ingresses = [with_keys("web", {REQUEST_TIMEOUT: "30"})]
    plan = agic.plan_ingresses(routes, ingresses, IngressLedger("ns"))
    assert plan.patches == {"web": {REQUEST_TIMEOUT: "68"}}
    applied = [with_keys("web", {REQUEST_TIMEOUT: "68"})]
    restore = agic.plan_ingresses([], applied, plan.ledger)
    assert restore.patches == {"web": {REQUEST_TIMEOUT: "30"}} and restore.ledger.is_empty
    released = agic.plan_ingresses([], applied, plan.ledger, release=True)
    assert released.patches == {} and released.ledger.is_empty


def test_a_value_changed_by_someone_else_is_not_restored() -> None:
    ledger = IngressLedger("ns", {("web", REQUEST_TIMEOUT): agic.Owned(None, "68")})
    plan = agic.plan_ingresses([], [with_keys("web", {REQUEST_TIMEOUT: "90"})], ledger)
    assert plan.patches == {} and plan.ledger.is_empty
    assert plan.notices and "not restored" in plan.notices[0].message


def test_the_ledger_round_trips() -> None:
    ledger = IngressLedger(
        "ns",
        {
            ("web", REQUEST_TIMEOUT): agic.Owned(None, "68"),
            ("web", DRAINING): agic.Owned("false", "true"),
        },
    )
    assert IngressLedger.from_json(ledger.to_json()) == ledger


def test_buffering_command_names_the_group_and_gateway() -> None:
    gid = "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.Network/applicationGateways/gw"
    assert agic.buffering_command(gid) == (
        "az network application-gateway update -g rg-a -n gw "
        "--set globalConfiguration.enableResponseBuffering=false"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("120", 120),
        ("+120", 120),
        ("-5", -5),
        ("007", 7),
        (" 120", None),
        ("120 ", None),
        ("1_20", None),
        ("\uff11\uff12\uff10", None),  # full-width digits
        ("12.0", None),
        ("", None),
        ("+", None),
        ("9223372036854775808", None),  # out of int64's range
    ],
)
def test_seconds_are_read_as_go_strconv_atoi_reads_them(text: str, value: int | None) -> None:
    assert agic.go_atoi(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("1", "t", "T", "TRUE", "true", "True")],
        *[(t, False) for t in ("0", "f", "F", "FALSE", "false", "False")],
        *[(t, None) for t in ("yes", "tRUE", " true", "on", "", "2")],
    ],
)
def test_booleans_are_read_as_go_strconv_parsebool_reads_them(
    text: str, value: bool | None
) -> None:
    assert agic.go_parse_bool(text) is value


@pytest.mark.parametrize("rejected", [" 600 ", "6_00", "\uff16\uff10\uff10"])
def test_a_timeout_agic_would_reject_counts_as_absent(rejected: str) -> None:
    """AGIC runs with its default 30 s for such a value: the operator sets a valid one, and
    remembers the original to restore it."""
    routes = [intent("r", service="svc")]
    plan = agic.plan_ingresses(
        routes, [with_keys("web", {REQUEST_TIMEOUT: rejected})], IngressLedger("ns")
    )
    assert plan.patches == {"web": {REQUEST_TIMEOUT: "68"}}
    assert plan.ledger.owned[("web", REQUEST_TIMEOUT)] == agic.Owned(rejected, "68")


@pytest.mark.parametrize(("draining", "patched"), [("True", False), ("T", False), ("yes", True)])
def test_draining_is_on_for_every_spelling_parsebool_takes_as_true(
    draining: str, patched: bool
) -> None:
    routes = [intent("r", drain=120, service="svc")]
    current = {REQUEST_TIMEOUT: "600", DRAINING: draining, DRAINING_TIMEOUT: "600"}
    plan = agic.plan_ingresses(routes, [with_keys("web", current)], IngressLedger("ns"))
    assert plan.patches == ({"web": {DRAINING: "true"}} if patched else {})


def test_the_other_services_of_a_shared_ingress_are_named() -> None:
    routes = [intent("r", service="svc")]
    shared = Ingress("web", {}, frozenset({"svc", "api", "admin"}))
    plan = agic.plan_ingresses(routes, [shared, ing("alone")], IngressLedger("ns"))
    assert plan.shared == {"ns/r": {"web": ["admin", "api"]}}
    words = agic.shared_words(plan.shared["ns/r"])
    assert words == "Ingress web also routes to Service admin, api"
    (notice,) = plan.notices
    assert notice.route == "ns/r" and notice.reason == Reason.INGRESS_SHARED
    assert notice.message.endswith(words)
    condition = conditions.agic_mode(
        "gw", "svc", ["alone", "web"], "request-timeout 68s", None, "", words
    )
    assert condition.reason == Reason.INGRESSES_ANNOTATED
    assert "(AGIC applies them to every Service of the Ingress: Ingress web also routes to " in (
        condition.message
    )
    # Nothing to change: the condition still names them, no Event is due.
    applied = Ingress("web", {REQUEST_TIMEOUT: "68"}, shared.services)
    again = agic.plan_ingresses(routes, [applied], plan.ledger)
    assert again.patches == {} and again.notices == () and again.shared == plan.shared
