"""Placeholder: `install_as_singa` (drop-in issue)."""


def install_as_singa() -> None:
    raise NotImplementedError("install_as_singa")
