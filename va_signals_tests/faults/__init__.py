"""Fault injection: the sources run against a misbehaving local upstream and a faulty database."""
