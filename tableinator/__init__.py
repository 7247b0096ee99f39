"""tableinator."""
