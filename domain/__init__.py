"""The energy domain: readings, mappings and efficiency rules as pure code (stdlib and attrs)."""
