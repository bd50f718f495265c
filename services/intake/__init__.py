"""Intake: registration of children at risk, case.* events."""
