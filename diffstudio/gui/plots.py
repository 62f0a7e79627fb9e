"""pyqtgraph plots: the live loss curve, particles over 2-D data, and schedule curves.

The loss curve keeps every logged point in growing numpy buffers but draws at most ten times a
second, clipped to the visible range and downsampled (peak mode) to the plot's width, so a run
of hundreds of thousands of steps stays responsive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

__all__ = [
    "SERIES_COLOURS",
    "GrowingSeries",
    "LossPlot",
    "ParticlePlot",
    "PlainLogAxis",
    "RunsLossPlot",
    "SchedulePlot",
    "ema_smooth",
    "major_grid",
    "plain_number",
]

pg.setConfigOptions(background="w", foreground="#303030", antialias=False,
                    imageAxisOrder="row-major")

_RAW_PEN = pg.mkPen((150, 170, 215), width=1)
_SMOOTH_PEN = pg.mkPen((31, 80, 180), width=2)
_LR_PEN = pg.mkPen((220, 120, 30), width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine)
SERIES_COLOURS = [(31, 80, 180), (220, 120, 30), (40, 150, 60), (180, 40, 40), (120, 60, 160)]


def major_grid(plot_item: pg.PlotItem, alpha: float = 0.2) -> None:
    """Grid lines at the major ticks only: a grid at every tick level costs about 10 ms per
    repaint on a small CPU (measured), which the live views cannot afford."""
    plot_item.showGrid(x=True, y=True, alpha=alpha)
    for name in ("left", "bottom", "right"):
        plot_item.getAxis(name).setStyle(maxTickLevel=0)


def ema_smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard's smoothing): s_k = m_k / (1 - w^k),
    m_k = w m_{k-1} + (1 - w) v_k. ``weight`` in [0, 1); 0 returns the values."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or values.size == 0:
        return values.copy()
    try:
        from scipy.signal import lfilter

        moving = lfilter([1.0 - weight], [1.0, -weight], values)
    except ImportError:  # pragma: no cover (scipy comes with scikit-learn)
        moving = np.empty_like(values)
        state = 0.0
        for index, value in enumerate(values):
            state = weight * state + (1.0 - weight) * value
            moving[index] = state
    return moving / (1.0 - weight ** np.arange(1, values.size + 1))


class GrowingSeries:
    """x/y float64 buffers that grow by doubling; :meth:`view` returns the filled part."""

    def __init__(self, capacity: int = 1024) -> None:
        self.x = np.empty(capacity)
        self.y = np.empty(capacity)
        self.size = 0

    def extend(self, xs: np.ndarray, ys: np.ndarray) -> None:
        count = len(xs)
        if self.size + count > len(self.x):
            capacity = max(2 * len(self.x), self.size + count)
            self.x = np.resize(self.x, capacity)
            self.y = np.resize(self.y, capacity)
        self.x[self.size : self.size + count] = xs
        self.y[self.size : self.size + count] = ys
        self.size += count

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.size], self.y[: self.size]

    def clear(self) -> None:
        self.size = 0


class LossPlot(QWidget):
    """Loss against step, raw and smoothed (EMA), optional log scale, with the learning rate on
    a second axis at the right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss = GrowingSeries()
        self.lr = GrowingSeries()
        self.smoothed = GrowingSeries()
        self._ema_state = 0.0
        self._ema_count = 0
        self._dirty = False
        self.redraws = 0

        self.widget = pg.PlotWidget(axisItems={"left": PlainLogAxis("left")})
        self.plot_item = self.widget.getPlotItem()
        self.plot_item.setLabel("bottom", "step")
        self.plot_item.setLabel("left", "loss")
        self.plot_item.getAxis("left").enableAutoSIPrefix(False)  # plain numbers, also in log
        major_grid(self.plot_item)
        self.legend = self.plot_item.addLegend(offset=(-10, 10))
        self.raw_curve = self.plot_item.plot(pen=_RAW_PEN, name="loss")
        self.smooth_curve = self.plot_item.plot(pen=_SMOOTH_PEN, name="smoothed (EMA)")
        self.lr_view = pg.ViewBox()
        self.plot_item.showAxis("right")
        self.plot_item.scene().addItem(self.lr_view)
        self.plot_item.getAxis("right").linkToView(self.lr_view)
        self.plot_item.getAxis("right").setLabel("learning rate", color="#dc781e")
        self.lr_view.setXLink(self.plot_item)
        self.lr_curve = pg.PlotDataItem(pen=_LR_PEN)
        self.lr_view.addItem(self.lr_curve)
        self.legend.addItem(self.lr_curve, "learning rate")
        for curve in (self.raw_curve, self.smooth_curve, self.lr_curve):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            curve.setSkipFiniteCheck(True)
        self.plot_item.vb.sigResized.connect(self._sync_views)

        self.log_scale = QCheckBox("Log scale")
        self.show_lr = QCheckBox("Learning rate")
        self.show_lr.setChecked(True)
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.0, 0.999)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setDecimals(3)
        self.smoothing.setValue(0.8)
        self.smoothing.setToolTip("Weight of the exponential moving average (0: off)")
        self.points_label = QLabel("")
        self.points_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(self.log_scale)
        controls.addWidget(self.show_lr)
        smoothing_label = QLabel("Smoothing")
        smoothing_label.setToolTip(self.smoothing.toolTip())
        controls.addWidget(smoothing_label)
        controls.addWidget(self.smoothing)
        controls.addStretch(1)
        controls.addWidget(self.points_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget, 1)
        layout.addLayout(controls)

        self.log_scale.toggled.connect(self._on_log_scale)
        self.show_lr.toggled.connect(self._on_show_lr)
        self.smoothing.valueChanged.connect(self._resmooth)
        # Draw at most ten times a second, and only when there is something new: an idle timer
        # would wake the main thread (and take the GIL from the training thread) for nothing.
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.redraw_if_needed)

    def _sync_views(self) -> None:
        self.lr_view.setGeometry(self.plot_item.vb.sceneBoundingRect())
        self.lr_view.linkedViewChanged(self.plot_item.vb, self.lr_view.XAxis)

    def _on_log_scale(self, enabled: bool) -> None:
        self.plot_item.setLogMode(x=False, y=enabled)
        # The plot sets log mode on all its axes; the learning rate's stays linear.
        self.plot_item.getAxis("right").setLogMode(x=False, y=False)
        self.plot_item.enableAutoRange()

    def _on_show_lr(self, visible: bool) -> None:
        self.lr_curve.setVisible(visible)
        self.plot_item.getAxis("right").setVisible(visible)

    # -- data ----------------------------------------------------------------------------------
    def point_count(self) -> int:
        return self.loss.size

    def clear(self) -> None:
        for series in (self.loss, self.lr, self.smoothed):
            series.clear()
        self._ema_state, self._ema_count = 0.0, 0
        self._dirty = True
        self.redraw()

    def append(self, steps: np.ndarray, losses: np.ndarray, lrs: np.ndarray) -> None:
        """Add logged points (steps increasing); drawn at the next tick."""
        steps = np.asarray(steps, dtype=np.float64)
        losses = np.asarray(losses, dtype=np.float64)
        self.loss.extend(steps, losses)
        self.lr.extend(steps, np.asarray(lrs, dtype=np.float64))
        weight = self.smoothing.value()
        smoothed = np.empty_like(losses)
        for index, value in enumerate(losses):
            self._ema_state = weight * self._ema_state + (1.0 - weight) * value
            self._ema_count += 1
            smoothed[index] = self._ema_state / (1.0 - weight**self._ema_count) if weight \
                else value
        self.smoothed.extend(steps, smoothed)
        self._schedule()

    def _schedule(self) -> None:
        self._dirty = True
        if not self.timer.isActive():
            self.timer.start()

    def showEvent(self, event: object) -> None:
        super().showEvent(event)
        if self._dirty:
            self._schedule()  # points that arrived while the page was hidden

    def set_history(self, steps: np.ndarray, losses: np.ndarray, lrs: np.ndarray) -> None:
        """Replace everything with a run's logged history (continuing a run)."""
        self.clear()
        self.append(steps, losses, lrs)
        self.redraw()

    def _resmooth(self) -> None:
        steps, losses = self.loss.view()
        weight = self.smoothing.value()
        smoothed = ema_smooth(losses, weight)
        self.smoothed.clear()
        self.smoothed.extend(steps.copy(), smoothed)
        if weight and losses.size:
            # Continue the running average from the last point: m = s (1 - w^n).
            self._ema_count = losses.size
            self._ema_state = float(smoothed[-1]) * (1.0 - weight**losses.size)
        self._dirty = True
        self.redraw()

    def redraw_if_needed(self) -> None:
        if self._dirty and self.isVisible():
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        self.redraws += 1
        steps, losses = self.loss.view()
        self.raw_curve.setData(steps, losses)
        self.smooth_curve.setData(*self.smoothed.view())
        lr_steps, lrs = self.lr.view()
        self.lr_curve.setData(lr_steps, lrs)
        finite = lrs[np.isfinite(lrs)]
        if finite.size and finite.max() > 0:
            # From zero, so that warm-up and decay read as fractions of the peak.
            self.lr_view.setYRange(0.0, float(finite.max()) * 1.05, padding=0)
        self.points_label.setText(f"{steps.size:,} points" if steps.size else "")


def plain_number(value: float) -> str:
    """A tick label a reader takes in at once: 0.02, 3.16, 50, 1,000 (no "5·10¹")."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


class PlainLogAxis(pg.AxisItem):
    """An axis whose log-scale ticks are plain numbers (pyqtgraph writes 10¹, 5·10¹)."""

    MIN_LABEL_GAP_PX = 16.0  # about one line of tick text; closer labels print over each other

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [plain_number(10.0 ** float(v)) for v in values]

    def logTickValues(self, minVal: float, maxVal: float, size: float,
                      stdTicks: list[tuple[float, list[float]]]) -> list[tuple[Any, Any]]:
        """pyqtgraph's ticks, but within a decade it keeps only 1, 2, 5 (then only 1) when the
        nine minor ticks would come closer than a line of text (they printed 0.6 0.7 0.8 0.9 1
        on top of each other in a short plot)."""
        levels = super().logTickValues(minVal, maxVal, size, stdTicks)
        span = maxVal - minVal
        if span <= 0 or size <= 0:
            return levels
        pixels_per_unit = size / span
        thinned = []
        for spacing, values in levels:
            if spacing is None and len(values) > 1:
                for keep in ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1,)):
                    chosen = [v for v in values
                              if round(10.0 ** (float(v) - np.floor(float(v) + 1e-9))) in keep]
                    gaps = np.diff(np.sort(np.asarray(chosen, dtype=float))) * pixels_per_unit
                    if not gaps.size or gaps.min() >= self.MIN_LABEL_GAP_PX:
                        break
                values = chosen
            thinned.append((spacing, values))
        return thinned


class RunsLossPlot(QWidget):
    """The loss curves of several runs overlaid (Runs page): one colour per run, named in the
    legend, smoothed as the Train page smooths (EMA 0.8), log scale by default."""

    SMOOTHING = 0.8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = pg.PlotWidget(axisItems={"left": PlainLogAxis("left")})
        self.plot_item = self.widget.getPlotItem()
        self.plot_item.setLabel("bottom", "step")
        self.plot_item.setLabel("left", "loss (smoothed)")
        self.plot_item.getAxis("left").enableAutoSIPrefix(False)
        major_grid(self.plot_item)
        self.legend = self.plot_item.addLegend(offset=(-10, 10))
        self.curves: dict[str, pg.PlotDataItem] = {}  # name -> curve
        self.log_scale = QCheckBox("Log scale")
        self.log_scale.setChecked(True)
        self.plot_item.setLogMode(y=True)
        self.note = QLabel("Select runs (Ctrl or Shift + click) to compare their loss curves.")
        self.note.setWordWrap(True)
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(self.log_scale)
        controls.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget, 1)
        layout.addLayout(controls)
        self.log_scale.toggled.connect(lambda on: self.plot_item.setLogMode(y=on))

    def set_curves(self, curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """``{run name: (steps, losses)}``, drawn in that order."""
        self.legend.clear()
        for curve in self.curves.values():
            self.plot_item.removeItem(curve)
        self.curves = {}
        for index, (name, (steps, losses)) in enumerate(curves.items()):
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            curve = self.plot_item.plot(steps, ema_smooth(losses, self.SMOOTHING),
                                        pen=pg.mkPen(colour, width=2), name=name)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.curves[name] = curve
        if curves:
            self.note.setText(f"{len(curves)} run{'s' if len(curves) != 1 else ''}: loss "
                              f"smoothed with EMA {self.SMOOTHING:g}, as on the Train page")
        else:
            self.note.setText("Select runs (Ctrl or Shift + click) to compare their loss "
                              "curves; these have no logged loss yet.")


class ParticlePlot(QWidget):
    """2-D points: the data (grey) and, for the analytic mixture, its exact density (shaded)
    under the particles (blue), which move as the sampler steps."""

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = pg.PlotWidget(title=title or None)
        self.plot_item = self.widget.getPlotItem()
        self.plot_item.setAspectLocked(True)
        major_grid(self.plot_item, alpha=0.15)
        self.density = pg.ImageItem()
        self.density.setColorMap(pg.ColorMap([0.0, 1.0], [(255, 255, 255), (250, 170, 90)]))
        self.density.setZValue(-10)
        self.plot_item.addItem(self.density)
        self.data = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(120, 120, 120, 90))
        self.particles = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(31, 80, 180, 200))
        self.plot_item.addItem(self.data)
        self.plot_item.addItem(self.particles)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)
        self.updates = 0

    def set_background(
        self,
        data: np.ndarray | None,
        density: np.ndarray | None = None,
        extent: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Data points (M, 2) and an optional density image (H, W) over ``extent``."""
        if data is not None and len(data):
            self.data.setData(x=data[:, 0], y=data[:, 1])
        else:
            self.data.clear()
        if density is not None and extent is not None:
            shown = np.sqrt(density / max(float(density.max()), 1e-300))  # brighter tails
            self.density.setImage(shown, levels=(0.0, 1.0))
            x_min, x_max, y_min, y_max = extent
            self.density.setRect(QRectF(x_min, y_min, x_max - x_min, y_max - y_min))
            self.density.setVisible(True)
        else:
            self.density.setVisible(False)
        self.plot_item.enableAutoRange()
        if data is not None and len(data):
            self.plot_item.autoRange(items=[self.data])
            self.plot_item.disableAutoRange()

    def set_particles(self, points: np.ndarray | None) -> None:
        """Particles (N, 2); None hides them."""
        self.updates += 1
        if points is None or not len(points):
            self.particles.clear()
        else:
            self.particles.setData(x=points[:, 0], y=points[:, 1])


class SchedulePlot(QWidget):
    """alpha-bar(t) and log10 SNR(t) of several schedules, with a marker at the chosen t."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = pg.GraphicsLayoutWidget()
        self.alpha_plot = self.widget.addPlot(title="alpha-bar(t)")
        self.snr_plot = self.widget.addPlot(title="log10 SNR(t)")
        for plot in (self.alpha_plot, self.snr_plot):
            plot.setLabel("bottom", "t")
            major_grid(plot)
            plot.addLegend(offset=(-10, 10))
        self.markers = [pg.InfiniteLine(angle=90, pen=pg.mkPen((80, 80, 80), width=1))
                        for _ in range(2)]
        self.alpha_plot.addItem(self.markers[0])
        self.snr_plot.addItem(self.markers[1])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def set_curves(
        self, curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> None:
        """``{name: (t (N,), alpha_bar (N,), snr (N,))}``: a schedule's grid in [0, 1] and the
        values its engine process gives there."""
        self.curves = dict(curves)
        for plot in (self.alpha_plot, self.snr_plot):
            for item in list(plot.listDataItems()):
                plot.removeItem(item)
            if plot.legend is not None:
                plot.legend.clear()
        for index, (name, (times, alpha_bars, snr)) in enumerate(self.curves.items()):
            pen = pg.mkPen(SERIES_COLOURS[index % len(SERIES_COLOURS)], width=2)
            self.alpha_plot.plot(times, alpha_bars, pen=pen, name=name)
            with np.errstate(divide="ignore"):
                self.snr_plot.plot(times, np.log10(snr), pen=pen, name=name)

    def set_marker(self, t: float) -> None:
        for marker in self.markers:
            marker.setValue(t)

    def marker(self) -> float:
        value = self.markers[0].value()
        return float(value) if not math.isnan(value) else 0.0
