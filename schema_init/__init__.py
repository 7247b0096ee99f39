"""schema_init."""
