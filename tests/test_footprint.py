"""What the running operator loads: modules that cost memory and that nothing in `appgw-sse run`
needs stay out (benchmarks/scale.py measures the whole footprint)."""

import subprocess
import sys

# CoreV1Api and NetworkingV1Api: 18 MiB, for a handful of calls `_Api` makes by path.
# azure-identity: 9 MiB, unused with a token file.
UNWANTED = (
    "kubernetes.client.api.core_v1_api",
    "kubernetes.client.api.networking_v1_api",
    "azure.identity",
)

PROBE = f"""
import sys
from pathlib import Path

import appgw_sse.handlers.routes, appgw_sse.running
from appgw_sse.adapters import kube
from appgw_sse.adapters.azure_gateway import ArmSettings, AzureGateways

kube.load_config = lambda: None  # no cluster: only what constructing the adapters imports
kube.Kube("appgw-sse")
kube._Api.request = lambda self, *args, **kwargs: {{"metadata": {{"uid": "u"}}}}
kube.cluster_uid()  # read by the leader at start
AzureGateways(ArmSettings(token_file=Path("token")))
print(sorted(m for m in {UNWANTED!r} if m in sys.modules))
"""


def test_the_operators_adapters_load_neither_the_generated_core_api_nor_azure_identity() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
