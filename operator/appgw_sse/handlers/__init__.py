"""kopf wiring: the operator's startup (the route, pod and Service watches, the workers) and
cleanup, and the Ingress handler of AGIC mode."""
