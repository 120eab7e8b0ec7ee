"""Prometheus metrics of the hub, served at ``/metrics``.

Counters are incremented on paths that already do I/O (a command stored, a batch
written), never per empty poll or heartbeat.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS_CREATED = Counter("tether_commands_created_total", "Commands accepted and stored.")
COMMANDS_FINISHED = Counter(
    "tether_commands_finished_total", "Commands reaching a terminal state.", ["state"]
)
COMMANDS_DELIVERED = Counter("tether_commands_handed_over_total", "Commands handed to devices.")
COMMAND_EVENTS_HEARD = Counter(
    "tether_command_events_heard_total",
    "Command events received from other processes and decoded (routed only where needed).",
)
NOTIFICATIONS_STORED = Counter("tether_notifications_stored_total", "Notifications stored.")
NOTIFICATION_BATCH = Histogram(
    "tether_notification_batch_rows",
    "Rows per batched notification insert.",
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000),
)
DEVICE_SESSIONS = Gauge("tether_device_sessions", "Live device sessions in this process.")
DEVICES_ONLINE = Gauge("tether_devices_online", "Devices seen online by this process.")
SUBSCRIPTIONS = Gauge("tether_subscriptions", "Live subscriptions in this process.")
SLOW_CONSUMERS = Counter(
    "tether_slow_consumers_total", "Connections closed because their send queue overflowed."
)
