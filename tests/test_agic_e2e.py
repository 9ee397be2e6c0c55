"""AGIC mode end to end: a route on a gateway AGIC manages gets its values into AGIC's Ingress
annotations (never a PUT), keeps a user's higher value, and takes them back on delete."""

from typing import Any

from tests.support.e2e import Rig, gateway_id, route_manifest, wait_for

AGIC_GATEWAY = gateway_id("agw-shop-agic")
INGRESSES = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses"
KEY = "appgw.ingress.kubernetes.io/"


def ingress(name: str, service: str, annotations: dict[str, str], by_class: bool = True) -> dict:
    spec: dict[str, Any] = {
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": f"/{name}",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": 80}}},
                        }
                    ]
                }
            }
        ]
    }
    if by_class:
        spec["ingressClassName"] = "azure-application-gateway"
    else:
        annotations = {**annotations, "kubernetes.io/ingress.class": "azure/application-gateway"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": spec,
    }


def annotations(rig: Rig, name: str) -> dict[str, str]:
    found = rig.get(f"{INGRESSES}/{name}") or {}
    kept = found["metadata"].get("annotations") or {}
    return {k: v for k, v in kept.items() if not k.startswith("kubectl.kubernetes.io/")}


def ours(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k.startswith(KEY)}


def test_agic_gateway_gets_ingress_annotations_and_never_a_put(rig: Rig) -> None:
    rig.apply(
        ingress("web", "notifications", {"team": "edge"}),
        # A user's higher timeout is kept; found through the class annotation.
        ingress("chat", "notifications", {KEY + "request-timeout": "600"}, by_class=False),
        ingress("shop", "storefront", {}),  # another Service: never touched
    )
    rig.operator()
    rig.apply(
        route_manifest(
            "agic",
            gateway_id=AGIC_GATEWAY,
            drainTimeout="2m",
            backend={"serviceName": "notifications"},
        )
    )
    configured = rig.wait_condition(
        "shop", "agic", "False", "ResponseBufferingEnabled", type_="GatewayConfigured"
    )
    assert (
        "az network application-gateway update -g rg-shop-prod -n agw-shop-agic "
        "--set globalConfiguration.enableResponseBuffering=false" in configured["message"]
    )
    assert annotations(rig, "web") == {
        "team": "edge",
        KEY + "request-timeout": "68",
        KEY + "connection-draining": "true",
        KEY + "connection-draining-timeout": "120",
    }
    assert ours(annotations(rig, "chat")) == {
        KEY + "request-timeout": "600",
        KEY + "connection-draining": "true",
        KEY + "connection-draining-timeout": "120",
    }
    assert ours(annotations(rig, "shop")) == {}
    status = (rig.route("shop", "agic") or {})["status"]
    assert status["mode"] == "AGIC" and status["ingresses"] == ["chat", "web"]
    assert status["gateway"]["responseBuffering"] == "Enabled"
    assert "AGIC" in rig.kubectl("get", "sser", "-n", "shop", "agic", "-o", "wide")

    # Someone turns buffering off; an Ingress change makes the operator look again.
    def buffering_off(document: dict[str, Any]) -> None:
        document["properties"]["globalConfiguration"]["enableResponseBuffering"] = False

    rig.emulator.third_party_put(buffering_off, AGIC_GATEWAY)
    rig.kubectl("label", "ingress", "-n", "shop", "web", "touched=yes")
    rig.wait_condition("shop", "agic", "True", "IngressesAnnotated")

    rig.kubectl("delete", "sser", "-n", "shop", "agic", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "agic") is None)
    assert annotations(rig, "web") == {"team": "edge"}
    assert ours(annotations(rig, "chat")) == {KEY + "request-timeout": "600"}
    assert rig.emulator.requests("PUT", AGIC_GATEWAY) == []
