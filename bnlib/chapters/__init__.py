"""One module per chapter: its parameters, profiles and experiment (discovered by name)."""
