"""Enlace services."""
