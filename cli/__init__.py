"""The `somnet` command."""
