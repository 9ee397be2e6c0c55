"""Which routes may use which gateways: `--allowed-gateway [NAMESPACE=]PATTERN`."""

import pytest

from appgw_sse.core.policy import GatewayRule, parse_rules, refusal

SHOP = "/subscriptions/s/resourceGroups/rg-shop/providers/Microsoft.Network/applicationGateways/agw-shop-1"
RULES = parse_rules(
    [
        "shop=/subscriptions/*/resourceGroups/RG-SHOP/*/applicationGateways/agw-shop-*",
        "team-*=/subscriptions/*/applicationGateways/agw-team",
        "/subscriptions/*/resourceGroups/rg-open/*",
    ]
)


def test_a_namespaced_rule_grants_its_gateways_to_its_namespaces_only() -> None:
    assert refusal(SHOP, "shop", RULES) is None
    why = refusal(SHOP, "payments", RULES)
    assert why is not None
    assert "--allowed-gateway shop=/subscriptions/*/resourceGroups/RG-SHOP/" in why
    assert "routes in namespace payments may not use it" in why
    team = SHOP.rsplit("/", 1)[0] + "/agw-team"
    assert refusal(team, "team-a", RULES) is None and refusal(team, "shop", RULES) is not None


def test_a_rule_without_a_namespace_grants_every_namespace_and_no_rule_nothing() -> None:
    open_gateway = SHOP.replace("rg-shop", "rg-open")
    assert refusal(open_gateway, "anyone", RULES) is None
    elsewhere = SHOP.replace("rg-shop", "rg-finance")
    assert "matches no --allowed-gateway pattern" in str(refusal(elsewhere, "shop", RULES))
    assert refusal(SHOP, "shop", ()) is not None


@pytest.mark.parametrize("text", ["=/subscriptions/x", "Shop=/x", "a/b=/x", "shop=", "a=b=c"])
def test_a_malformed_rule_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not NAMESPACE=PATTERN") as raised:
        GatewayRule.parse(text)
    assert repr(text) in str(raised.value)
