"""Kafka: producer and topic helpers, the batch consume loop with dead-lettering.

Importing this package installs :mod:`.fetch_backoff` (an idle consumer must not spin a core
against a broker that answers empty fetches at once, as the embedded one does).
"""

from scrm_shared.kafka import fetch_backoff

fetch_backoff.install()
