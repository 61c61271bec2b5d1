"""A folder for `sys.path`: its `singa` package lets spawned workers of `singax run` scripts import singax as `singa`."""
