"""A local emulator of the ARM REST API for Microsoft.Network/applicationGateways (HTTPS)."""
