"""Enlace's public promise to partner agencies: topics, the CloudEvents envelope,
the version-1 event models and the code tables they use.

A partner in any language consumes our topics from `schemas/` and `asyncapi.yaml`,
which are generated from these models (`python -m contracts.generate`).
"""
