"""Vigil: telemetry and incident-response control plane for GPU inference fleets."""

__version__ = "0.1.0"
