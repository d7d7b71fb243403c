"""Density plots for models of 2-D points: the learned density next to the data.

>>> from genzoo.viz.flows import save_density_plot
>>> save_density_plot(model, load_dataset("toy2d:moons", "test"), "moons_density.png")

Works for any model with an exact ``log_prob`` on 2-D points (the flows;
for a model whose ``likelihood`` is a bound it draws exp of the bound).
"""

from __future__ import annotations

from pathlib import Path

import torch

from genzoo.core.errors import GenzooError


@torch.no_grad()
def density_grid(model, bounds: float = 4.5, resolution: int = 200, batch_size: int = 8192):
    """exp(log_prob) on a resolution x resolution grid over [-bounds, bounds]^2.

    Returns (density (R, R) with rows along y, x coordinates, y coordinates, cell area).
    """
    spec = getattr(model, "data_spec", {}) or {}
    if spec.get("kind") != "points" or list(spec.get("shape", [])) != [2]:
        raise GenzooError(f"density plots need a model of 2-D points; this one models {spec.get('kind')} of shape {spec.get('shape')}")
    axis = torch.linspace(-bounds, bounds, resolution)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        log_p = torch.cat([model.log_prob(c.to(device)).cpu() for c in grid.split(batch_size)])
    finally:
        model.train(was_training)
    cell = (axis[1] - axis[0]).item() ** 2
    return log_p.exp().view(resolution, resolution), axis, axis, cell


def save_density_plot(model, data, path: str | Path, *, bounds: float = 4.5, resolution: int = 200,
                      title: str = "") -> Path:
    """Write a PNG: the data's 2-D histogram (left) beside the model's density exp(log_prob) (right).

    ``data`` is a ``Dataset`` of 2-D points or an (N, 2) tensor. The panel
    title gives the share of the model's probability mass inside the plotted
    box (a grid sum), a quick check that the density is normalised.
    """
    from genzoo.viz.samples import _matplotlib, save_square_panels

    points = getattr(data, "x", data)
    points = torch.as_tensor(points).detach().float().cpu()
    if points.ndim != 2 or points.shape[1] != 2:
        raise GenzooError(f"data must be 2-D points (N, 2), got shape {tuple(points.shape)}")
    density, xs, ys, cell = density_grid(model, bounds, resolution)
    mass = float(density.sum()) * cell

    plt = _matplotlib()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_data, ax_model) = plt.subplots(1, 2, figsize=(8, 4))
    ax_data.hist2d(points[:, 0].numpy(), points[:, 1].numpy(), bins=resolution // 2,
                   range=[[-bounds, bounds], [-bounds, bounds]], cmap="magma", density=True)
    ax_data.set_title(f"data ({len(points)} points)")
    ax_model.imshow(density.numpy(), origin="lower", extent=(-bounds, bounds, -bounds, bounds), cmap="magma")
    ax_model.set_title(f"{getattr(model, 'family', '') or 'model'} density (mass in box {mass:.3f})")
    return save_square_panels(fig, (ax_data, ax_model), path, title)


__all__ = ["density_grid", "save_density_plot"]
