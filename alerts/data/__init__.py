"""Alert engine data files (package so that the YAML files ship in wheels via package-data)."""
