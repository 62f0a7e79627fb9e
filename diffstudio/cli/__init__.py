"""The ``diffstudio`` command: one module per verb (``train``, ``sample``, ``evaluate``,
``plugins``), the options and terminal progress they share (``options``), and the dispatcher
(``dispatch``). Every verb builds a typed request and drives an application-layer job
(:mod:`diffstudio.app`), exactly as the window does."""

from diffstudio.cli.dispatch import main

__all__ = ["main"]
