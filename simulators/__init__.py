"""ParkPulse simulators: honest stand-ins for meters, line sensors and stack monitors.

They speak only wire protocols (Modbus TCP/RTU, MQTT) and import nothing of the project.
Public entry points: `simulators.modbus.ModbusSimulator`, `simulators.rtu.RtuSimulator`,
`simulators.mqtt_sensors.LineSensor`, the `parkpulse-sim` command (simulators.cli).
"""

__all__: list[str] = []
