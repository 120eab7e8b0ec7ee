"""The live plane of one process: the service facade and everything it drives.

APIs and dialects call :class:`tether.hub.service.Hub` only; it owns the store, the bus,
live device sessions, the pending index, the sweeper, presence and subscriptions.
"""
