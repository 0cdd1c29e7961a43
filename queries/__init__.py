"""Read-side SQL over the read models, returning frozen view types."""
