"""Smoke tests of the benchmark scripts (bench/)."""
