"""One place for every setting, read from the environment with the ``NURTURE_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.destinations import Allowance

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TASK_QUEUE = "nurture"


DEV_ENV = "dev.env"
"""Written by `nurture dev` under the data directory while it runs: the addresses of its
Temporal, Postgres and API, for the commands run in a second terminal."""


class Settings(BaseSettings):
    """Production settings; an unset Temporal address or database URL means "embedded" to
    `nurture dev`."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", extra="ignore")

    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    task_queue: str = DEFAULT_TASK_QUEUE

    database_url: str | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 2 * 1024 * 1024
    api_access_log: bool = False
    """One log line per request (uvicorn's access log); off by default: it costs CPU on
    the hot path, and the enrollment log and the metrics say what happened."""
    """Larger request bodies are refused with 413."""

    worker_shutdown_grace_seconds: float = 10.0
    """On SIGTERM the worker lets running activities finish for this long, then cancels
    them so Temporal retries them on another worker."""

    workspace: str = "default"
    data_dir: Path = Path(".nurture")

    max_stage_entries: int = 100
    """Stage entries per enrollment before it ends with ``loop_limit``."""

    # email over SMTP; unset host: email is recorded in the outbox, not sent
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    """`starttls` upgrades a plain connection, `tls` connects over TLS (port 465), `none`
    sends in the clear (local relays and the dev sink only)."""
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: str | None = None
    """PEM file of the CA(s) to trust for the SMTP server's certificate (a private relay);
    unset: the system's trust store."""
    smtp_from: str = "nurture@localhost"
    smtp_timeout: float = 30
    webhook_timeout: float = 10
    """Seconds a webhook may take to connect, or between two reads of its reply."""
    webhook_deadline: float = 15
    """Seconds a whole webhook request may take, however slowly its receiver trickles."""
    webhook_allow: str = ""
    """Hosts, addresses and ranges a webhook may reach although they are loopback, private
    or link-local (comma-separated: `127.0.0.1,::1,localhost,10.20.0.0/16`)."""

    # templates render in child processes (services/rendering.py)
    render_processes: int = 2
    """Render processes per API or worker process."""
    render_seconds: float = 2.0
    """How long one render may take before it fails `template_too_costly`."""
    render_memory_mb: int = 512
    """The address space of a render process."""
    render_output_chars: int = 256_000
    """What one template part may render to."""

    # the sender (services/sender.py) hands queued messages to SMTP and the webhook
    send_from_api: bool = True
    """The API process runs a sender; set false where `nurture sender` runs on its own."""
    sender_concurrency: int = 16
    """Messages one sender hands over at once (each holds a database connection)."""
    send_wait_seconds: float = 60
    """How long a send activity waits for the sender before it fails and Temporal retries
    it (the wait, not the message, is retried: the message stays queued)."""

    dev_mailbox: bool = False
    """`nurture dev`: GET /v1/messages shows what the local SMTP sink received."""
    dev_smtp_port: int = 1025

    # journey life cycle
    tracking_secret: str | None = None
    """Signs the open, click and unsubscribe tokens of emails; unset: emails are not
    tracked and carry no unsubscribe link (docs/channels.md, "Tracking")."""
    public_url: str = "http://127.0.0.1:8000"
    """Where mail clients reach the API's tracking endpoints (`/t/...`)."""
    track_text_links: bool = False
    """Also rewrite the URLs of plain-text parts to click-tracked ones (off: a text reader
    sees an opaque link where the URL was)."""
    unsubscribe_mailto: str | None = None
    """Also offered in `List-Unsubscribe` (as `mailto:`), when set."""
    machine_seconds: float = 5.0
    """An open or click this soon after the email was handed over counts as a machine's."""
    temporal_ui_url: str = "http://127.0.0.1:8233"
    """The Temporal UI the web view links each enrollment's workflow to."""
    api_key_cache_seconds: float = 5.0
    """How long the API trusts a key it looked up: a revoked key stops working within it."""
    metrics_eligible_seconds: float = 10.0
    """How long a journey's `eligible` count is reused by `/metrics` (counting it reads
    every member of the eligible lists)."""
    max_journeys_per_owner: int = 10
    max_journeys_per_workspace: int = 200
    """Journeys one workspace may have, whoever owns them."""
    ingest_rate: float = 5000.0
    """Items (events, contact writes, list changes) one workspace may send an API process
    per second, sustained; past it, 429 with Retry-After. 0: no limit."""
    ingest_burst: int = 50_000
    """Items a workspace may send at once above the sustained rate."""
    max_eligible_lists: int = 5
    activation_rate: float = 200.0
    """Enrollments an activation starts per second, at most (unenroll signals likewise)."""
    activation_page_size: int = 500
    """Contacts per activation page: the workflow continues as new after each."""
    activation_concurrency: int = 8
    """Enrollment starts an activation has in flight at once (each holds a connection)."""
    activation_heartbeat_seconds: float = 30.0
    """A batch page that has not heartbeated in this long (its worker died) is retried."""

    @field_validator("webhook_allow")
    @classmethod
    def _allowance_reads(cls, spec: str) -> str:
        Allowance.parse(spec)
        return spec

    @property
    def webhook_allowance(self) -> Allowance:
        return Allowance.parse(self.webhook_allow)

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or DEFAULT_TEMPORAL_ADDRESS

    @classmethod
    def with_dev_stack(cls) -> Settings:
        """Settings for a command that talks to a running stack (`nurture keys`,
        `journeys`, `replay`): the environment first, then the addresses of the stack
        `nurture dev` runs in this directory, if it runs (`.nurture/dev.env`)."""
        dev_env = cls().data_dir / DEV_ENV
        return cls(_env_file=dev_env) if dev_env.exists() else cls()

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SystemExit(
                "NURTURE_DATABASE_URL is not set: point it at Postgres (or run `nurture dev`)."
            )
        return self.database_url
