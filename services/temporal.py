"""Connecting to Temporal the same way everywhere: pydantic payloads, settings-driven TLS.
Used by every process that talks to Temporal (API, worker, CLI)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from shared.search_attributes import SEARCH_ATTRIBUTES
from shared.settings import Settings

_KINDS = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


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
        data_converter=pydantic_data_converter,
        lazy=lazy,
    )


async def register_search_attributes(client: Client) -> None:
    """Adds nurture's search attributes to the client's namespace: what a server that was
    not started with them (the time-skipping test server) needs before any enrollment."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            search_attributes={name: _KINDS[kind] for name, kind in SEARCH_ATTRIBUTES.items()},
            namespace=client.namespace,
        )
    )
