"""Settings of one service process (API or worker)."""

from __future__ import annotations

from scrm_shared.config import PlatformSettings


class ServiceSettings(PlatformSettings):
    """What every service adds to the platform settings: where it listens.

    Subclasses set ``port`` (and its ``SCRM_<NAME>_PORT`` alias); the worker's Prometheus endpoint
    defaults to ``port + 100``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    worker_metrics_port: int | None = None
    # Overrides the service's schema name (tests, or several deployments sharing one database).
    db_schema: str | None = None
    # How long a starting process waits for PostgreSQL and Kafka before giving up.
    startup_wait_seconds: float = 90.0

    # faust (hosting timers/agents of a worker) keeps local data here and serves on port + 200.
    faust_datadir: str = ".scrm/faust"
    faust_web_port: int | None = None

    @property
    def effective_worker_metrics_port(self) -> int:
        return self.worker_metrics_port or self.port + 100

    @property
    def effective_faust_web_port(self) -> int:
        return self.faust_web_port or self.port + 200
