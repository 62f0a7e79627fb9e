"""Every built-in schedule, one per file; each is a
:class:`~diffstudio.engine.processes.DiffusionProcess`.

The contract (x_t = m(t) x_0 + s(t) z, with ``marginal``, ``q_sample``, ``alpha_bar``, ``snr``,
``grid`` and the SDE's drift and diffusion) is defined in :mod:`diffstudio.engine.processes`.

* DDPM beta schedules: :mod:`.linear`, :mod:`.cosine`, :mod:`.quadratic`, :mod:`.sigmoid`. Each
  has ``<name>_schedule`` returning DDPM's table (:class:`NoiseSchedule`, :mod:`.ddpm`) and
  ``<name>_process``, the schedule factory, returning it as a :class:`ScheduleProcess`.
* NCSN's noise levels (:mod:`.ncsn`), the VE, VP and sub-VP SDEs (:mod:`.ve_sde`,
  :mod:`.vp_sde`, :mod:`.subvp_sde`).
"""

from __future__ import annotations

from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess, as_process
from diffstudio.engine.schedules.ncsn import NCSNLevels
from diffstudio.engine.schedules.subvp_sde import SubVPSDE
from diffstudio.engine.schedules.ve_sde import VESDE
from diffstudio.engine.schedules.vp_sde import VPSDE

__all__ = [
    "VESDE",
    "VPSDE",
    "NCSNLevels",
    "NoiseSchedule",
    "ScheduleProcess",
    "SubVPSDE",
    "as_process",
]
