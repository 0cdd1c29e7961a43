"""Projector runtime and one module per read model, built asynchronously from the event log."""
