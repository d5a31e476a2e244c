"""Measurements taken on a model without changing it (see ``functional`` for the contract)."""
