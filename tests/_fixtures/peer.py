"""Fixtures for the atdata 0.7 peer."""
