"""Connecting to Temporal the same way everywhere: pydantic payloads, settings-driven TLS.
Used by every process that talks to Temporal (API, worker, CLI)."""

from __future__ import annotations

import threading
from typing import ClassVar

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter

from shared.settings import Settings


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, one instance per process. The SDK constructs a
    payload converter for every workflow activation (twice) and every workflow run, each
    with an empty cache of pydantic type adapters, so that each run built its adapters
    again; the converter holds nothing that changes but that cache, which is thread-safe
    (`functools.lru_cache`)."""

    _shared: ClassVar[SharedPydanticPayloadConverter | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls) -> SharedPydanticPayloadConverter:
        with cls._lock:
            if cls._shared is None:
                shared = super().__new__(cls)
                PydanticPayloadConverter.__init__(shared)
                cls._shared = shared
            return cls._shared

    def __init__(self) -> None:
        pass  # initialised once, by __new__


DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
"""Pydantic payloads (the SDK's `pydantic_data_converter`, with one converter per process)."""


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    elif settings.temporal_api_key:
        tls = True
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        tls=tls,
        data_converter=DATA_CONVERTER,
        lazy=lazy,
    )
