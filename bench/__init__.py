"""Benchmarks: a load generator, a direct seeder of the event store, and the standard run."""
