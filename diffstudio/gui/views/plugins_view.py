"""The Plugins page, a manager: every plugin found with its version, distribution, summary,
links, contributions, status (loaded, disabled, failed with its error and traceback) and
start-up import time; an Enabled toggle per third-party plugin; install from a name, folder,
wheel or URL and uninstall, with pip's output streamed; a banner with a Restart button after
any change (nothing is loaded into the running window half-way).

Installs run ``python -m diffstudio plugins install TARGET`` in a :class:`QProcess`: the same
checks as the command line (constraints pinning torch, numpy, PySide6..., a dry run first,
refusals in one line; :mod:`diffstudio.app.plugin_install`), in another process, so the
window never waits for pip and pip never touches the modules this process has imported.
"""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QEvent, QObject, QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui.studio import Studio
from diffstudio.plugin_settings import disabled_plugins, set_plugin_disabled

__all__ = ["PluginsView", "plugin_status"]

ENABLED_COLUMN = 4


def plugin_status(plugin: Any) -> str:
    """"ok", "error", "disabled" or "skipped (safe mode)"."""
    if plugin.skipped:
        return "skipped (safe mode)"
    if getattr(plugin, "disabled", False):
        return "disabled"
    return "error" if plugin.error else "ok"


class PluginsView(QWidget):
    """A tree of plugins and their contributions, details of the selected one, and the
    install/uninstall/enable/disable controls.

    ``python`` is the interpreter whose environment installs go into (this one by default);
    ``restart_command`` what the Restart button starts after closing the window.
    """

    errors_changed = Signal(int)  # how many plugins failed to load
    changed = Signal(str)  # an install, uninstall, enable or disable took effect: what it was
    finished = Signal(int)  # an install/uninstall process ended with this exit code

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.python = sys.executable
        self.restart_command: tuple[str, list[str]] = (
            sys.executable, ["-m", "diffstudio"] + (["--safe-mode"] if studio.safe_mode else []))
        self.process: QProcess | None = None
        self._updating = False
        self._guarded_window: QWidget | None = None
        self._close_when_done = False

        self.summary = QLabel("Loading plugins…")
        self.summary.setWordWrap(True)

        # The restart banner: shown after any change, until the window restarts.
        self.banner = QFrame()
        self.banner.setObjectName("restartBanner")
        self.banner.setStyleSheet("#restartBanner { background: #fff4ce; border: 1px solid "
                                  "#e0c060; border-radius: 4px; }")
        self.banner_label = QLabel()
        self.banner_label.setWordWrap(True)
        self.restart_button = QPushButton("Restart")
        self.restart_button.clicked.connect(self.restart)
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.addWidget(self.banner_label, 1)
        banner_layout.addWidget(self.restart_button)
        self.banner.setVisible(False)

        # Install / uninstall.
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText(
            "A plugin to install: a name (diffstudio-edm), a source folder, a wheel or a URL")
        self.target_edit.returnPressed.connect(self.install)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        self.offline_check = QCheckBox("Offline")
        self.offline_check.setToolTip("pip --no-index --no-build-isolation: install local "
                                      "files only, building them in this environment")
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.install)
        self.uninstall_button = QPushButton("Uninstall selected")
        self.uninstall_button.setEnabled(False)
        self.uninstall_button.clicked.connect(self.uninstall_selected)
        controls = QHBoxLayout()
        controls.addWidget(self.target_edit, 1)
        controls.addWidget(self.browse_button)
        controls.addWidget(self.offline_check)
        controls.addWidget(self.install_button)
        controls.addWidget(self.uninstall_button)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(6)
        self.tree.setHeaderLabels(["Plugin / contribution", "Kind", "Origin", "Status",
                                   "Enabled", "Start-up"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.setAlternatingRowColors(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a plugin to see its details.")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("pip's output appears here while a plugin installs.")
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.details)
        lower.addWidget(self.log)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tree)
        splitter.addWidget(lower)
        splitter.setSizes([400, 280])
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.banner)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)
        self.tree.currentItemChanged.connect(self._show_details)
        self.tree.itemChanged.connect(self._on_item_changed)
        studio.registry_changed.connect(self.set_registry)
        if studio.registry is not None:
            self.set_registry(studio.registry)

    # -- the list -------------------------------------------------------------------------------
    def set_registry(self, registry: Any) -> None:
        self._updating = True
        self.tree.clear()
        style = self.style()
        ok_icon = style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton)
        error_icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical)
        off_icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
        disabled_now = set(disabled_plugins())
        for plugin in registry.plugins:
            status = plugin_status(plugin)
            origin = "built-in" if plugin.builtin else (
                f"{plugin.distribution} {plugin.version}" if plugin.distribution != "?"
                else "unknown distribution")
            seconds = f"{plugin.load_seconds:.2f} s" if plugin.ok or plugin.error else ""
            item = QTreeWidgetItem([plugin.name, "plugin", origin, status, "", seconds])
            item.setData(0, Qt.ItemDataRole.UserRole, plugin)
            item.setIcon(0, error_icon if plugin.error else ok_icon if plugin.ok else off_icon)
            if not plugin.builtin:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(ENABLED_COLUMN, Qt.CheckState.Unchecked
                                   if plugin.name in disabled_now else Qt.CheckState.Checked)
                item.setToolTip(ENABLED_COLUMN, "Load this plugin at start-up (takes effect "
                                                "after a restart)")
            if plugin.error:
                for column in range(4):
                    item.setForeground(column, QBrush(QColor("#b52a25")))
                item.setToolTip(0, plugin.error)
            elif plugin.summary:
                item.setToolTip(0, plugin.summary)
            for contribution in plugin.contributions:
                child = QTreeWidgetItem([f"{contribution.display_name}  [{contribution.id}]",
                                         contribution.kind, "", "", "", ""])
                child.setData(0, Qt.ItemDataRole.UserRole, contribution)
                child.setToolTip(0, contribution.description)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
            item.setExpanded(bool(plugin.error) or not plugin.builtin)
        for column in (1, 2, 3, 4, 5):
            self.tree.resizeColumnToContents(column)
        self._updating = False
        errors = registry.errors
        loaded = sum(1 for p in registry.plugins if p.ok)
        disabled = sum(1 for p in registry.plugins if getattr(p, "disabled", False))
        text = f"{len(registry.plugins)} plugin(s) found, {loaded} loaded"
        if disabled:
            text += f", {disabled} disabled"
        if registry.safe_mode:
            text += "; safe mode: only the built-in plugins are loaded"
        if errors:
            names = ", ".join(p.name for p in errors)
            text += (f". <b style='color:#b52a25'>{len(errors)} failed to load: {names}.</b> "
                     "The others work; select one to see its traceback.")
        self.summary.setText(text)
        if errors:
            first = self.item_for(errors[0].name)
            if first is not None:
                self.tree.setCurrentItem(first)
        self.errors_changed.emit(len(errors))

    def item_for(self, name: str) -> QTreeWidgetItem | None:
        """The top-level row of plugin ``name``."""
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            if item.text(0) == name:
                return item
        return None

    def _selected_plugin(self) -> Any:
        item = self.tree.currentItem()
        while item is not None and item.parent() is not None:
            item = item.parent()
        payload = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        return payload if hasattr(payload, "entry_point") else None

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating or column != ENABLED_COLUMN or item.parent() is not None:
            return
        enabled = item.checkState(ENABLED_COLUMN) == Qt.CheckState.Checked
        name = item.text(0)
        try:
            set_plugin_disabled(name, not enabled)
        except OSError as exc:
            self.studio.notifications.error(f"Could not save the plugin settings: {exc}",
                                            source="Plugins")
            return
        self._needs_restart(f"{name} will be {'loaded' if enabled else 'left out'} at the "
                            "next start.")
        self.changed.emit(f"{'enable' if enabled else 'disable'} {name}")

    # -- install / uninstall ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.process is not None

    def install(self, target: str | None = None) -> bool:
        """Install ``target`` (default: the field's text) in a QProcess; False when busy or
        empty."""
        target = (target if isinstance(target, str) else self.target_edit.text()).strip()
        if not target:
            self.studio.notifications.warning(
                "Type a plugin name, a folder, a wheel or a URL to install.", source="Plugins")
            return False
        arguments = ["install"]
        if self.offline_check.isChecked():
            arguments += ["--no-index", "--no-build-isolation"]
        arguments += ["--", target]  # a target is never read as an option
        return self._run_pip(arguments, f"install {target}")

    def uninstall_selected(self) -> bool:
        plugin = self._selected_plugin()
        if plugin is None or plugin.builtin:
            return False
        return self._run_pip(["uninstall", "--", plugin.name], f"uninstall {plugin.name}")

    def _run_pip(self, arguments: list[str], what: str) -> bool:
        if self.busy:
            return False
        self.log.appendPlainText(f"$ diffstudio plugins {' '.join(arguments)}")
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(environment)
        process.readyReadStandardOutput.connect(self._read_output)
        process.finished.connect(lambda code, _status: self._on_finished(what, code))
        process.errorOccurred.connect(lambda error: self._on_process_error(what, error))
        self.process = process
        self._set_busy(True)
        process.start(self.python, ["-m", "diffstudio", "plugins", *arguments])
        return True

    def _read_output(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            if "\r" in line or line.lstrip().startswith("pip: Requirement already satisfied"):
                continue  # progress bars redrawn in place; what is already installed
            self.log.appendPlainText(line)

    def _on_finished(self, what: str, code: int) -> None:
        self._read_output()
        self.process = None
        self._set_busy(False)
        if self._close_when_done:
            self._close_when_done = False
            window = self.window()
            if window is not self:
                window.close()
        if code == 0:
            self.log.appendPlainText(f"-- {what}: done")
            self._needs_restart(f"{what}: done.")
            self.changed.emit(what)
        else:
            lines = [line for line in self.log.toPlainText().splitlines() if "error:" in line]
            reason = lines[-1].split("error: ", 1)[-1] if lines else f"exit status {code}"
            self.log.appendPlainText(f"-- {what}: failed")
            self.studio.notifications.error(f"{what} failed: {reason}",
                                            self.log.toPlainText()[-4000:], source="Plugins")
        self.finished.emit(code)

    def _on_process_error(self, what: str, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.process = None
            self._set_busy(False)
            self.studio.notifications.error(f"{what}: could not start {self.python}",
                                            source="Plugins")
            self.finished.emit(-1)

    def _set_busy(self, busy: bool) -> None:
        window = self.window()
        if busy and window is not self and self._guarded_window is not window:
            window.installEventFilter(self)  # no closing while pip writes site-packages
            self._guarded_window = window
        for widget in (self.install_button, self.browse_button, self.target_edit):
            widget.setEnabled(not busy)
        self._update_uninstall()

    def _update_uninstall(self) -> None:
        plugin = self._selected_plugin()
        self.uninstall_button.setEnabled(not self.busy and plugin is not None
                                         and not plugin.builtin)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Keep the window open while pip runs: killing pip half-way through writing
        site-packages is the one way an install could leave the environment broken."""
        if watched is self._guarded_window and event.type() == QEvent.Type.Close and self.busy:
            event.ignore()
            self.studio.notifications.warning(
                "A plugin install is still running; the window closes when it has finished "
                "(pip is not interrupted half-way).", source="Plugins")
            self._close_when_done = True
            return True
        return super().eventFilter(watched, event)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Install a plugin package", "", "Python packages (*.whl *.tar.gz *.zip)")
        if path:
            self.target_edit.setText(path)

    def _needs_restart(self, what: str) -> None:
        self.banner_label.setText(f"<b>Restart diffstudio to apply the plugin changes.</b> "
                                  f"{what} The plugins in this window stay as they were loaded.")
        self.banner.setVisible(True)

    def restart(self) -> None:
        """Close the window (asking first if jobs run) and start diffstudio again."""
        window = self.window()
        if window is not self and not window.close():
            return
        program, arguments = self.restart_command
        QProcess.startDetached(program, arguments)

    # -- details ------------------------------------------------------------------------------
    def _show_details(self, item: QTreeWidgetItem | None) -> None:
        self._update_uninstall()
        if item is None:
            self.details.clear()
            return
        payload = item.data(0, Qt.ItemDataRole.UserRole)
        if hasattr(payload, "entry_point"):  # a PluginInfo
            lines = [
                f"plugin:        {payload.name}",
                f"distribution:  {payload.distribution} {payload.version}"
                + ("  (built-in)" if payload.builtin else ""),
            ]
            if payload.summary:
                lines.append(f"summary:       {payload.summary}")
            lines += [f"{label + ':':<15}{url}" for label, url in payload.urls.items()]
            lines += [
                f"entry point:   {payload.entry_point}",
                f"status:        {plugin_status(payload)}"
                + (f" ({payload.disabled_reason})" if getattr(payload, "disabled_reason", "")
                   else ""),
                f"start-up:      {payload.load_seconds:.3f} s",
            ]
            if payload.error:
                lines += [f"failed while:  {payload.error_stage}",
                          f"error:         {payload.error}", "", payload.traceback or ""]
            else:
                lines += ["", "contributes:"] + [
                    f"  {c.kind:<9}{c.id:<16}{c.display_name}" for c in payload.contributions
                ]
        else:  # a Contribution
            lines = [f"{payload.kind} {payload.id!r}: {payload.display_name}",
                     f"plugin: {payload.plugin}", f"factory: {payload.factory}", "",
                     payload.description, "", "parameters:"]
            for param in payload.params:
                bounds = ""
                if param.choices:
                    bounds = f" one of {list(param.choices)}"
                elif param.minimum is not None or param.maximum is not None:
                    bounds = f" in [{param.minimum}, {param.maximum}]"
                lines.append(f"  {param.name} ({param.type}, default {param.default!r}{bounds})"
                             f"  {param.help}")
        self.details.setPlainText("\n".join(lines))
