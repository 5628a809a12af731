"""CLI commands (being built)."""


def register(sub) -> None:
    pass
