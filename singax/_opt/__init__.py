"""The optimizer families behind `singax.opt` (which re-exports them)."""
