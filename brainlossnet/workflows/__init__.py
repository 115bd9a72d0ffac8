"""Pydra workflows wiring the stage interfaces together."""
