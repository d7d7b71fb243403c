"""Energy-landscape pictures for an EBM of 2-D points: data, exp(-E) and the model's samples.

exp(-E) is normalised numerically over the plotted box (a grid sum), so the
middle panel is the density the energy defines there, on the data's scale.
"""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def energy_grid(model, bound: float, resolution: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (R, R) (rows along y) on a grid over [-bound, bound]^2, and the axis."""
    axis = torch.linspace(-bound, bound, resolution)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(model.device)
    with model._eval_mode():
        energy = torch.cat([model.energy(c) for c in grid.split(8192)]).cpu()
    return energy.view(resolution, resolution), axis


def save_energy_landscape(model, data, path: str | Path, *, n_samples: int = 2000, seed: int = 0,
                          sampler_options: dict | None = None) -> Path:
    """PNG with three panels: the data's histogram, exp(-E) normalised on the box, and samples."""
    from genzoo.viz.samples import _matplotlib, save_square_panels

    bound = float(model.config.init_bound)
    energy, _ = energy_grid(model, bound)
    density = torch.softmax(-energy.flatten().double(), 0).view_as(energy)
    samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed), **(sampler_options or {})).cpu()
    points = torch.as_tensor(getattr(data, "x", data)).float().cpu()

    plt = _matplotlib()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    box = [[-bound, bound], [-bound, bound]]
    axes[0].hist2d(points[:, 0].numpy(), points[:, 1].numpy(), bins=100, range=box, cmap="magma")
    axes[0].set_title(f"data ({len(points)} points)")
    axes[1].imshow(density.numpy(), origin="lower", extent=(-bound, bound, -bound, bound), cmap="magma")
    axes[1].set_title("exp(-E), normalised on the box")
    axes[2].hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=100, range=box, cmap="magma")
    axes[2].set_title(f"SGLD samples ({n_samples})")
    return save_square_panels(fig, axes, path, getattr(model, "family", "") + " energy landscape")


__all__ = ["energy_grid", "save_energy_landscape"]
