"""Tether's native API: management REST, client WebSocket and the native device API.

Everything is mounted under ``/api/v1`` and described by the OpenAPI document at
``/api/v1/openapi.json``. The wire structs live in :mod:`tether.api.codec` (pure, shared
with the device agent and the CLI); each ``*_routes`` module is thin glue to the hub.
"""
