"""Tether: one self-hosted server between IoT devices and the apps that drive them."""

__version__ = "0.1.0"
