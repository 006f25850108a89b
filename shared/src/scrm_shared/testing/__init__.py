"""Test fixtures shared by every service: a real Kafka-protocol broker and a real PostgreSQL.

Loaded as a pytest plugin (``-p scrm_shared.testing.plugin`` in the root pyproject).
"""
