"""Helpers shared by the reference recipes (dependencies, freezing, Sample ops, tensor conversion)."""
