"""The desktop studio: PySide6 + pyqtgraph on top of :mod:`diffstudio.engine`.

All Qt code of diffstudio lives in this package, and this package holds no diffusion math: it
builds forms from plugin schemas, runs the engine's blocking calls (``Trainer.train``,
``generate``) in QThread workers, and paints what the engine reports through its callbacks.

Modules: ``app`` (start-up, :func:`diffstudio.gui.app.run_app`), ``main_window``, ``workers``
(QThread jobs), ``forms`` (forms from :class:`diffstudio.specs.Param` schemas), ``images``
(numpy arrays to QImage), ``plots`` (pyqtgraph), ``notifications``, ``settings`` (QSettings) and
``views/`` (one module per place in the window).
"""
