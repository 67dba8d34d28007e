"""Deployment tooling of ParkPulse: Grafana dashboards as code and their provisioning."""

__all__: list[str] = []
