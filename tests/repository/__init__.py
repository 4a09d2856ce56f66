"""Checks of the repository as a whole (no secret in any tracked file, dependencies pointing
one way): a few seconds each, in `make test`, outside the unit tier."""
