"""Shared helpers for podsync's tests: real Docker containers and condition waits.

Import as ``from tests.support.docker import ...`` / ``from tests.support.wait import wait_until``.
"""
