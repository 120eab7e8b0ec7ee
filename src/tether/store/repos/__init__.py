"""One repository per aggregate, each a thin set of SQLAlchemy Core statements."""

from tether.store.repos.api_keys import ApiKeyRepo
from tether.store.repos.command_batches import CommandBatchRepo, NewCommand, TransitionRequest
from tether.store.repos.commands import CommandRepo
from tether.store.repos.configs import ConfigRepo
from tether.store.repos.devices import DeviceRepo
from tether.store.repos.firmware import FirmwareRepo
from tether.store.repos.meta import MetaRepo
from tether.store.repos.notifications import NewNotification, NotificationRepo
from tether.store.repos.scopes import DeviceTypeRepo, NetworkRepo
from tether.store.repos.states import StateRepo
from tether.store.repos.users import UserRepo

__all__ = [
    "ApiKeyRepo",
    "CommandBatchRepo",
    "CommandRepo",
    "ConfigRepo",
    "DeviceRepo",
    "DeviceTypeRepo",
    "FirmwareRepo",
    "MetaRepo",
    "NetworkRepo",
    "NewCommand",
    "NewNotification",
    "NotificationRepo",
    "StateRepo",
    "TransitionRequest",
    "UserRepo",
]
