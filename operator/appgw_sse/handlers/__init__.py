"""kopf wiring: thin handlers that hand route events to the reconciler."""
