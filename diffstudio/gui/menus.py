"""The menu bar and the keyboard shortcuts of the main window.

File (new run, open a run folder, open a workspace, quit), Edit (preferences), View (the
pages, the theme), Run (the current page's job, stop), Help (quick start, documentation,
keyboard shortcuts, about). Ctrl+Enter runs the current page's job, Esc stops it, Ctrl+1..9
and Ctrl+0 show a page, F1 the quick start. Every action goes through what the pages' own
buttons do: a menu never has a path of its own into the engine.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QUrl, qVersion
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPushButton

from diffstudio.gui.preferences_dialog import THEMES, PreferencesDialog, apply_theme

__all__ = ["DOCUMENTATION_URL", "QUICK_START", "Menus"]

DOCUMENTATION_URL = "https://github.com/diffstudio/diffstudio#readme"

QUICK_START = """<h3>Quick start</h3>
<ol>
<li><b>Data</b>: pick a dataset (scikit-learn's 8x8 digits ship with diffstudio; 2-D toy data is
generated) and press <i>Load and preview</i>.</li>
<li><b>Model &amp; schedule</b>: the small U-Net and a linear schedule are a good start.</li>
<li><b>Train</b> (Ctrl+Enter): watch the loss and the previews; Esc stops, keeping a
checkpoint.</li>
<li><b>Sample</b>: choose the run and a sampler (DDIM, DDPM, DPM-Solver++, Langevin...) and
watch the trajectory.</li>
<li><b>Evaluate</b>: FID@N, KID, precision/recall and the nearest training images.</li>
</ol>
<p>Every page's job also runs headless: <code>diffstudio train | sample | eval | export |
experiment | onnx | plugins</code> (see <code>--help</code>).</p>"""


def _press(button: QPushButton) -> bool:
    """Press ``button`` if it can be pressed now; True when it was."""
    if button.isEnabled() and button.isVisible():
        button.click()
        return True
    return False


class Menus:
    """The window's menus; :attr:`actions` by name for tests and for the shortcut list."""

    def __init__(self, window: Any) -> None:  # the MainWindow, which imports this module
        self.window = window
        self.actions: dict[str, QAction] = {}
        bar = window.menuBar()

        file_menu = bar.addMenu("&File")
        self._add(file_menu, "new_run", "&New run", self.new_run, "Ctrl+N",
                  "Start a new run from the Data and Model pages' setup")
        self._add(file_menu, "open_run", "&Open run folder…", self.open_run, "Ctrl+O",
                  "Continue training a run folder")
        self._add(file_menu, "open_workspace", "Open &workspace…",
                  window.runs_view.choose_workspace, None, "Choose the folder that holds runs")
        file_menu.addSeparator()
        self._add(file_menu, "quit", "&Quit", window.close, "Ctrl+Q")

        edit_menu = bar.addMenu("&Edit")
        self._add(edit_menu, "preferences", "&Preferences…", self.preferences, "Ctrl+,")

        view_menu = bar.addMenu("&View")
        self.page_actions: list[QAction] = []
        for index, name in enumerate(window.page_names()):
            action = self._add(view_menu, f"page:{name}", name.replace("&", "&&"),
                               lambda checked=False, n=name: window.show_page(n),
                               f"Ctrl+{(index + 1) % 10}" if index < 10 else None)
            self.page_actions.append(action)
        view_menu.addSeparator()
        theme_menu = view_menu.addMenu("&Theme")
        group = QActionGroup(window)
        current = window.preferences.get_str("theme", "system")
        for theme in THEMES:
            action = self._add(theme_menu, f"theme:{theme}", theme.capitalize(),
                               lambda checked=False, t=theme: self.set_theme(t))
            action.setCheckable(True)
            action.setChecked(theme == current)
            group.addAction(action)

        run_menu = bar.addMenu("&Run")
        self._add(run_menu, "run", "&Run this page's job", self.run_current, "Ctrl+Return",
                  "Train, sample or evaluate, as the current page does")
        self.actions["run"].setShortcuts([QKeySequence("Ctrl+Return"),
                                          QKeySequence("Ctrl+Enter")])
        self._add(run_menu, "stop", "&Stop", self.stop_current, "Esc",
                  "Stop the current page's job (a stopped training keeps a checkpoint)")
        run_menu.addSeparator()
        for page in ("Train", "Sample", "Evaluate"):
            self._add(run_menu, f"go:{page}", f"{page}…",
                      lambda checked=False, p=page: window.show_page(p))

        help_menu = bar.addMenu("&Help")
        self._add(help_menu, "quick_start", "&Quick start", self.quick_start, "F1")
        self._add(help_menu, "documentation", "&Documentation", self.documentation)
        self._add(help_menu, "shortcuts", "&Keyboard shortcuts", self.shortcuts)
        help_menu.addSeparator()
        self._add(help_menu, "about", "&About diffstudio", self.about)

    # -- building ---------------------------------------------------------------------------------
    def _add(self, menu: Any, name: str, text: str, slot: Callable[..., Any],
             shortcut: Any = None, tip: str = "") -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        self.actions[name] = action
        return action

    # -- File -------------------------------------------------------------------------------------
    def new_run(self) -> None:
        train = self.window.train_view
        if not train.is_running():
            train.new_run()
        self.window.show_page("Data")

    def open_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open a run folder",
                                                  str(self.window.studio.workspace))
        if folder:
            self.open_run_folder(folder)

    def open_run_folder(self, folder: str) -> None:
        from diffstudio.engine.runs import Run  # torch-free

        if not Run.is_run(folder):
            self.window.notifications.warning(
                f"{folder} is not a diffstudio run (it has no config.json); choose a folder "
                "made by Train or 'diffstudio train'", source="Open run")
            return
        self.window.open_run_for_training(folder)

    # -- Edit -------------------------------------------------------------------------------------
    def preferences(self) -> None:
        dialog = PreferencesDialog(self.window)
        if dialog.exec():
            dialog.apply()

    # -- View -------------------------------------------------------------------------------------
    def set_theme(self, theme: str) -> None:
        self.window.preferences.set("theme", theme)
        apply_theme(theme)
        action = self.actions.get(f"theme:{theme}")
        if action is not None:
            action.setChecked(True)

    # -- Run --------------------------------------------------------------------------------------
    def _page_buttons(self) -> tuple[QPushButton | None, QPushButton | None]:
        """(run, stop) buttons of the current page; None where the page has none."""
        window = self.window
        page = window.current_page()
        if page == "Train":
            return window.train_view.train_button, window.train_view.stop_button
        if page == "Sample":
            return window.sample_view.tab_buttons()  # the tab shown: Sample, Compare, ...
        if page == "Evaluate":
            return window.evaluate_view.evaluate_button, window.evaluate_view.cancel_button
        if page == "Data":
            return window.data_view.load_button, None
        if page == "Experiments":
            return window.experiments_view.run_button, window.experiments_view.stop_button
        if page == "Queue":
            return window.queue_view.run_button, window.queue_view.stop_button
        return None, None

    def run_current(self) -> bool:
        """Press the current page's run button (Train, Sample, Evaluate, Load); True when a job
        was started. On a page without one, say where jobs run."""
        button = self._page_buttons()[0]
        if button is None:
            self.window.notifications.info(
                "Ctrl+Enter runs the job of the Data, Train, Sample, Evaluate, Experiments "
                "and Queue pages.",
                source="Run")
            return False
        return _press(button)

    def stop_current(self) -> bool:
        button = self._page_buttons()[1]
        return button is not None and _press(button)

    # -- Help -------------------------------------------------------------------------------------
    def quick_start(self) -> None:
        QMessageBox.information(self.window, "Quick start", QUICK_START)

    def documentation(self) -> None:
        if not QDesktopServices.openUrl(QUrl(DOCUMENTATION_URL)):
            self.window.notifications.warning(
                f"No web browser could be started here; the documentation is at "
                f"{DOCUMENTATION_URL} and in the docs/ folder of the source.", source="Help")

    def shortcut_rows(self) -> list[tuple[str, str]]:
        rows = []
        for action in self.actions.values():
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText)
                             for s in action.shortcuts())
            if keys:
                text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
                rows.append((text, keys))
        return rows

    def shortcuts(self) -> None:
        table = "".join(f"<tr><td>{text}</td><td><b>{keys}</b></td></tr>"
                        for text, keys in self.shortcut_rows())
        QMessageBox.information(self.window, "Keyboard shortcuts",
                                f"<table cellspacing='6'>{table}</table>")

    def about_text(self) -> str:
        import diffstudio

        versions = {"diffstudio": diffstudio.__version__, "Python": platform.python_version(),
                    "Qt": qVersion(), "PySide6": pyside_version}
        engine = self.window.studio.engine
        if engine is not None:  # torch, CUDA, diffusers as the engine loader found them
            versions.update(engine.versions)
            versions["CUDA"] = engine.cuda or "none (a CPU build of torch)"
        else:
            versions["torch"] = "loading…"
        rows = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>"
                       for name, value in versions.items())
        return ("<h3>diffstudio</h3><p>A desktop studio for diffusion models: train DDPM, DDIM, "
                "NCSN and score-SDE models, compare samplers, evaluate.</p>"
                f"<table cellspacing='4'>{rows}</table>")

    def about(self) -> None:
        QMessageBox.about(self.window, "About diffstudio", self.about_text())

