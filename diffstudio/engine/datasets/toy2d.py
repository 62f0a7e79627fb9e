"""Two-dimensional toy distributions, for watching a diffusion model learn in the plane.

* ``"mixture"``: the mixture of two Gaussians with unit covariance,
  p(x) = 0.8 N(x; (5, 5), I) + 0.2 N(x; (-5, -5), I) (the example of Song & Ermon 2019, §3.2,
  where Langevin dynamics on the exact score misjudges the weights). Its exact log-density and
  score are :func:`mixture_log_density` and :func:`mixture_score`.
* ``"two-moons"``: two interleaved half circles (as ``sklearn.datasets.make_moons``), centred
  and scaled by 1/0.7 to a spread of about one.
* ``"swiss-roll"``: the 2-D swiss roll (the x and z columns of
  ``sklearn.datasets.make_swiss_roll``: t (cos t, sin t) with t uniform in [1.5 pi, 4.5 pi]),
  divided by 7 to a standard deviation of about one.
* ``"rings"``: three concentric circles of radii 0.6, 1.2 and 1.8.

Every set is drawn with a ``torch.Generator`` seeded with ``seed``, so the same parameters give
the same points on every machine, and shuffled.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.errors import ConfigError

__all__ = [
    "MIXTURE_MEANS",
    "MIXTURE_WEIGHTS",
    "TOY2D_NAMES",
    "load_toy2d",
    "mixture_log_density",
    "mixture_score",
]

TOY2D_NAMES: tuple[str, ...] = ("mixture", "two-moons", "swiss-roll", "rings")
MIXTURE_WEIGHTS: tuple[float, float] = (0.8, 0.2)
MIXTURE_MEANS: tuple[tuple[float, float], tuple[float, float]] = ((5.0, 5.0), (-5.0, -5.0))
RING_RADII: tuple[float, ...] = (0.6, 1.2, 1.8)
_MOONS_CENTRE = (0.5, 0.25)
_MOONS_SCALE = 1.0 / 0.7
_SWISS_ROLL_SCALE = 1.0 / 7.0


def load_toy2d(
    name: str = "mixture", num_points: int = 10000, seed: int = 0, noise: float = 0.05
) -> Dataset:
    """Draw ``num_points`` points of the toy set ``name`` as float32 (num_points, 2).

    ``noise`` is the standard deviation of isotropic Gaussian noise added to each point of
    ``"two-moons"``, ``"swiss-roll"`` and ``"rings"``, in the units of the output; the mixture
    ignores it (its components already have unit covariance, and its density is exact).

    Labels (int64, (num_points,)): the mixture component (0: weight 0.8 at (5, 5); 1: weight
    0.2 at (-5, -5)), the moon (0: upper, 1: lower) or the ring (0: innermost). The swiss roll
    has no classes. Raises :class:`ConfigError` for an unknown name or a bad parameter.
    """
    key = str(name).strip().lower()
    if key not in TOY2D_NAMES:
        raise ConfigError(f"unknown toy 2-D set {name!r}; choose one of {list(TOY2D_NAMES)}")
    if isinstance(num_points, bool) or int(num_points) != num_points or num_points < 1:
        raise ConfigError(f"toy2d num_points must be a positive integer, got {num_points!r}")
    if not math.isfinite(float(noise)) or noise < 0:
        raise ConfigError(f"toy2d noise must be a finite number >= 0, got {noise!r}")
    num_points, noise = int(num_points), float(noise)
    generator = torch.Generator().manual_seed(int(seed))

    class_names: list[str] | None
    if key == "mixture":
        points, labels = _mixture(num_points, generator)
        class_names = ["0.8 N((5, 5), I)", "0.2 N((-5, -5), I)"]
    elif key == "two-moons":
        points, labels = _two_moons(num_points, generator)
        class_names = ["upper moon", "lower moon"]
    elif key == "swiss-roll":
        points, labels = _swiss_roll(num_points, generator), None
        class_names = None
    else:
        points, labels = _rings(num_points, generator)
        class_names = [f"ring r={radius}" for radius in RING_RADII]

    if key != "mixture" and noise > 0:
        points = points + noise * torch.randn(points.shape, generator=generator, dtype=points.dtype)
    order = torch.randperm(num_points, generator=generator)
    points = points[order]
    labels = labels[order] if labels is not None else None
    return Dataset(
        name=key,
        data=points.to(torch.float32).contiguous(),
        kind="points",
        labels=labels,
        num_classes=len(class_names) if class_names is not None else None,
        class_names=class_names,
        source=f"toy2d:{key} num_points={num_points} seed={int(seed)} noise={noise}",
        log_density=mixture_log_density if key == "mixture" else None,
    )


def _mixture(num_points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Component ~ Categorical(0.8, 0.2), then x ~ N(mean of the component, I)."""
    weights = torch.tensor(MIXTURE_WEIGHTS, dtype=torch.float64)
    labels = torch.multinomial(weights, num_points, replacement=True, generator=generator)
    means = torch.tensor(MIXTURE_MEANS, dtype=torch.float64)
    points = means[labels] + torch.randn((num_points, 2), generator=generator, dtype=torch.float64)
    return points, labels


def _balanced_labels(num_points: int, num_classes: int) -> torch.Tensor:
    """Labels 0..num_classes-1 in equal shares (the first classes get the remainder)."""
    return torch.arange(num_points, dtype=torch.int64) * num_classes // num_points


def _two_moons(num_points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper half circle of radius 1 at (0, 0), lower one at (1, 0.5) opening up."""
    labels = _balanced_labels(num_points, 2)
    angle = math.pi * torch.rand(num_points, generator=generator, dtype=torch.float64)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1.0 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    points = torch.where((labels == 0).unsqueeze(1), upper, lower)
    centre = torch.tensor(_MOONS_CENTRE, dtype=torch.float64)
    return (points - centre) * _MOONS_SCALE, labels


def _swiss_roll(num_points: int, generator: torch.Generator) -> torch.Tensor:
    """t (cos t, sin t) / 7 with t uniform in [1.5 pi, 4.5 pi]."""
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(num_points, generator=generator,
                                                dtype=torch.float64))
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) * _SWISS_ROLL_SCALE


def _rings(num_points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal shares of points, uniform in angle, on circles of radii RING_RADII."""
    labels = _balanced_labels(num_points, len(RING_RADII))
    radius = torch.tensor(RING_RADII, dtype=torch.float64)[labels]
    angle = 2.0 * math.pi * torch.rand(num_points, generator=generator, dtype=torch.float64)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1), labels


def _mixture_logits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log w_k - |x - mu_k|^2 / 2 for each component k: shape (..., 2); and the means (2, 2)."""
    if x.shape[-1] != 2:
        raise ConfigError(f"the mixture is 2-D; x must have shape (..., 2), got {tuple(x.shape)}")
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    x = x.to(dtype)
    means = torch.tensor(MIXTURE_MEANS, dtype=dtype, device=x.device)
    log_weights = torch.tensor(MIXTURE_WEIGHTS, dtype=dtype, device=x.device).log()
    squared = (x.unsqueeze(-2) - means).square().sum(dim=-1)  # (..., 2)
    return log_weights - 0.5 * squared, means


def mixture_log_density(x: torch.Tensor) -> torch.Tensor:
    """Exact log p(x) of 0.8 N((5, 5), I) + 0.2 N((-5, -5), I); x: (..., 2) -> (...).

    Computed as logsumexp_k(log w_k - |x - mu_k|^2 / 2) - log(2 pi), so it stays finite far
    from both means; works in x's floating dtype (float64 for reference values).
    """
    logits, _ = _mixture_logits(x)
    return torch.logsumexp(logits, dim=-1) - math.log(2.0 * math.pi)


def mixture_score(x: torch.Tensor) -> torch.Tensor:
    """Exact score grad_x log p(x) of the mixture; x: (..., 2) -> (..., 2).

    sum_k r_k(x) (mu_k - x), with responsibilities r = softmax_k(log w_k - |x - mu_k|^2 / 2)
    (stable for any x).
    """
    logits, means = _mixture_logits(x)
    responsibilities = torch.softmax(logits, dim=-1)  # (..., 2)
    return responsibilities @ means - x.to(logits.dtype)
