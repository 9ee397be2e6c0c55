"""kopf wiring: thin handlers that hand route events to the route book and pod events to the
pod worker."""
