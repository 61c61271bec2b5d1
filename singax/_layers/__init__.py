"""The layer families behind `singax.layer` (which re-exports them)."""
