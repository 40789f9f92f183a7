"""Fixtures that start real services on loopback."""
