"""`appgw-sse claims`: read the claims on a gateway, and release the claim of a cluster that no
longer exists (its operator can no longer remove it, so the gateway would keep its values)."""

import sys

from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.core import claims as cl
from appgw_sse.core.document import gateway_name
from appgw_sse.core.planner import release_claims
from appgw_sse.ports import ArmSettings, GatewayError


def render(document: dict[str, object]) -> str:
    """The claims on a gateway, one owner a line, and the originals they return to."""
    claims, problems, _ = cl.read(document)
    lines = [f"gateway {gateway_name(document)}"]
    if not claims.owners():
        lines.append("  no claims")
    for owner in claims.owners():
        lines.append(f"  {owner}: {claims.describe(owner)}")
    if claims.originals:
        originals = "; ".join(
            f"{p.field.describe(p.setting)} " + ("absent" if o.absent else p.field.show(o.value))
            for p, o in sorted(claims.originals.items(), key=lambda i: i[0].label)
        )
        lines.append(f"  originals: {originals}")
    lines += [f"  problem: {problem}" for problem in problems]
    return "\n".join(lines)


async def list_claims(settings: ArmSettings, gateway_id: str) -> int:
    gateways = AzureGateways(settings)
    try:
        snapshot = await gateways.get(gateway_id)
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await gateways.close()
    print(render(snapshot.document))
    return 0


async def release(settings: ArmSettings, gateway_id: str, owner: str, dry_run: bool) -> int:
    """One PUT: the owner's claim gone, each place it claimed at what the others need (or its
    original), on the document read (If-Match)."""
    gateways = AzureGateways(settings)
    try:
        snapshot = await gateways.wait_until_settled(gateway_id)
        try:
            plan = release_claims(gateway_id, snapshot.document, owner)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for notice in plan.notices:
            print(f"warning: {notice.message}", file=sys.stderr)
        what = "; ".join(x for x in (plan.summary, plan.claims_summary) if x)
        if dry_run:
            print(f"would change gateway {gateway_name(snapshot.document)}: {what}")
            return 2
        await gateways.apply(plan, snapshot)
        print(f"gateway {gateway_name(snapshot.document)}: {what}")
        return 0
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await gateways.close()
