"""Test-only code that must be importable on the workers of the test clusters."""
