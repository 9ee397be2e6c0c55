"""Pure domain logic: no kopf, kubernetes or azure imports live here."""
