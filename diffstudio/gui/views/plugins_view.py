"""The Plugins page: every plugin found, its status, what it contributes, and for a plugin
that failed to load the stage, the error and the full traceback."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui.studio import Studio

__all__ = ["PluginsView", "plugin_status"]


def plugin_status(plugin: Any) -> str:
    """"ok", "error" or "skipped (safe mode)"."""
    if plugin.skipped:
        return "skipped (safe mode)"
    return "error" if plugin.error else "ok"


class PluginsView(QWidget):
    """A tree of plugins and their contributions, with details (traceback) of the selected one."""

    errors_changed = Signal(int)  # how many plugins failed to load

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.summary = QLabel("Loading plugins…")
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Plugin / contribution", "Kind", "Origin", "Status"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.setAlternatingRowColors(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a plugin to see its details.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tree)
        splitter.addWidget(self.details)
        splitter.setSizes([420, 260])
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)
        self.tree.currentItemChanged.connect(self._show_details)
        studio.registry_changed.connect(self.set_registry)
        if studio.registry is not None:
            self.set_registry(studio.registry)

    def set_registry(self, registry: Any) -> None:
        self.tree.clear()
        style = self.style()
        ok_icon = style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton)
        error_icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical)
        skipped_icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
        for plugin in registry.plugins:
            status = plugin_status(plugin)
            origin = "built-in" if plugin.builtin else (
                f"{plugin.distribution} {plugin.version}" if plugin.distribution != "?"
                else "unknown distribution")
            item = QTreeWidgetItem([plugin.name, "plugin", origin, status])
            item.setData(0, Qt.ItemDataRole.UserRole, plugin)
            item.setIcon(0, error_icon if plugin.error else
                         skipped_icon if plugin.skipped else ok_icon)
            if plugin.error:
                for column in range(4):
                    item.setForeground(column, QBrush(QColor("#b52a25")))
                item.setToolTip(0, plugin.error)
            for contribution in plugin.contributions:
                child = QTreeWidgetItem([f"{contribution.display_name}  [{contribution.id}]",
                                         contribution.kind, "", ""])
                child.setData(0, Qt.ItemDataRole.UserRole, contribution)
                child.setToolTip(0, contribution.description)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
            item.setExpanded(bool(plugin.error) or not plugin.builtin)
        for column in (1, 2, 3):
            self.tree.resizeColumnToContents(column)
        errors = registry.errors
        loaded = sum(1 for p in registry.plugins if p.ok)
        text = f"{len(registry.plugins)} plugin(s) found, {loaded} loaded"
        if registry.safe_mode:
            text += "; safe mode: only the built-in plugins are loaded"
        if errors:
            names = ", ".join(p.name for p in errors)
            text += (f". <b style='color:#b52a25'>{len(errors)} failed to load: {names}.</b> "
                     "The others work; select one to see its traceback.")
        self.summary.setText(text)
        if errors:
            first = self._item_for(errors[0].name)
            if first is not None:
                self.tree.setCurrentItem(first)
        self.errors_changed.emit(len(errors))

    def _item_for(self, name: str) -> QTreeWidgetItem | None:
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            if item.text(0) == name:
                return item
        return None

    def _show_details(self, item: QTreeWidgetItem | None) -> None:
        if item is None:
            self.details.clear()
            return
        payload = item.data(0, Qt.ItemDataRole.UserRole)
        if hasattr(payload, "entry_point"):  # a PluginInfo
            lines = [
                f"plugin:        {payload.name}",
                f"distribution:  {payload.distribution} {payload.version}"
                + ("  (built-in)" if payload.builtin else ""),
                f"entry point:   {payload.entry_point}",
                f"status:        {plugin_status(payload)}",
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
