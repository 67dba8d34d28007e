"""Built-in device profiles (YAML): a package only so they ship in wheels."""
