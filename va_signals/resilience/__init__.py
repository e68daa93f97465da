"""Pure resilience logic: failure classes, the resilient HTTP path, breakers and limits."""
