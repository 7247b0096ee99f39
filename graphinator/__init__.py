"""graphinator."""
