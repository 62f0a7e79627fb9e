"""The desktop studio: PySide6 + pyqtgraph on top of :mod:`diffstudio.engine`.

All Qt code of diffstudio lives in this package, and this package holds no diffusion math: it
builds forms from plugin schemas, runs the engine's blocking calls (``Trainer.train``,
``generate``) in QThread workers, and paints what the engine reports through its callbacks.

Modules: ``app`` (start-up, :func:`diffstudio.gui.app.run_app`), ``main_window``, ``studio``
(the state the views share), ``workers`` (QThread jobs: engine loading, training) and
``sampling_jobs`` (sampling, comparing, interpolating), ``forms`` (forms from
:class:`diffstudio.specs.Param` schemas; ``train_settings`` holds the training schema),
``images`` (numpy arrays to QImage), ``plots`` (pyqtgraph), ``notifications``, ``settings``
(QSettings), ``run_list`` (the workspace's runs), ``refcount_guard`` (a PySide6 6.12.0 bug) and
``views/`` (one module per place in the window).
"""
