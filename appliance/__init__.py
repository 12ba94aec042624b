"""Rig-side training appliance for drilling depth estimation."""

__version__ = "0.1.0"
