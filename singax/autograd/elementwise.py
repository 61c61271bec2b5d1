"""Placeholder: filled by its family issue."""
__all__ = []
