"""appgw-sse-operator: Server-Sent Events through Azure Application Gateway."""

__version__ = "0.1.0"

from importlib import resources

# The example routes and gateway document shipped with the package (deploy/examples).
EXAMPLES = resources.files("appgw_sse") / "examples"
