"""The five device-cloud dialects, one package each.

Every dialect is a translation, not a second server: a pure codec (``codec.py``: bytes
and dicts in, core values out, no I/O), the routes that speak it (``routes.py``), and the
device side (``agent.py``). It reaches the core only through the hub facade
(:class:`tether.hub.service.Hub`), never the store or the bus, and never another dialect;
import-linter holds it to that. ``tether.app.mount_dialects`` mounts each one.
"""
