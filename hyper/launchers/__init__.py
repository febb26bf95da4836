"""Launchers start workers where a region's compute is."""

from hyper.launchers.base import Launcher, LaunchRequest

__all__ = ["LaunchRequest", "Launcher"]
