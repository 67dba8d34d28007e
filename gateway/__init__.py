"""ParkPulse edge gateway: Modbus and MQTT sources, device profiles, spool, uplink."""

__all__ = ["__version__"]

__version__ = "0.1.0"
