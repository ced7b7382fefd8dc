"""Testing tools for users' workflows."""

__all__: list[str] = []
