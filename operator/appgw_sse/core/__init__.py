"""Pure domain logic: no kopf, kubernetes or azure imports, and nothing from models/ (which
builds on this package)."""
