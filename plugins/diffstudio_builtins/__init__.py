"""The plugins that ship with diffstudio.

Each module here is registered through the ``diffstudio`` entry-point group, exactly like a
third-party plugin, and only declares specs; the implementations live in
:mod:`diffstudio.engine` and are imported when first used.
"""
