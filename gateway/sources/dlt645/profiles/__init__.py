"""Built-in DL/T 645 meter profiles (YAML): a package only so they ship in wheels."""
