"""Example third-party diffstudio plugin (see README.md)."""
