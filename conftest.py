"""The tunegate plugin is registered through its pytest11 entry point (see pyproject.toml), as
syrupy and pytest-regressions are; nothing else is needed here."""
