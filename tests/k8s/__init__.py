"""Tests of the Kubernetes API emulator, podsync's Kubernetes transport and target selection."""
