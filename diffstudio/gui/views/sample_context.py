"""What the Compare and Interpolate panels may ask of the Sample page that holds them.

The panels take this narrow interface instead of reaching into the page's widgets, and the
page implements it; neither module imports the other's.
"""

from __future__ import annotations

from typing import Any, Protocol

from diffstudio.app.sample import ModelSummary
from diffstudio.app.sources import ModelSource

__all__ = ["SampleContext"]


class SampleContext(Protocol):
    """The Sample page, as its panels see it."""

    @property
    def summary(self) -> ModelSummary | None:
        """The model last loaded by a sampling job (for the particle background), if any."""
        ...

    def run_source(self) -> ModelSource:
        """The chosen run as a model source; :class:`ConfigError` when none is chosen."""
        ...

    def run_timesteps(self) -> int | None:
        """T of the chosen run's noise schedule (None when no readable run is chosen)."""
        ...

    def sampling_options(self) -> dict[str, Any]:
        """The validated number of samples, seed, batch size ... (ConfigError inline)."""
        ...

    def sampler_values(self, sampler_id: str) -> dict[str, Any]:
        """The validated parameters of ``sampler_id``'s form (shown on error: ConfigError)."""
        ...

    def update_buttons(self) -> None:
        """Re-evaluate which buttons may be pressed (a panel's job started or ended)."""
        ...
