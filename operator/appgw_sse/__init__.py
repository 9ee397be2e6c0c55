"""appgw-sse-operator: Server-Sent Events through Azure Application Gateway."""

__version__ = "0.1.0"
