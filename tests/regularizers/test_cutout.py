"""Cutout hole geometry against a per-pixel loop of the paper's code (DeVries & Taylor, 2017)."""
import numpy as np
import torch

from regbench.regularizers import create_regularizer
from regbench.regularizers.erasing import cutout_mask


def paper_mask(height, width, centers, length):
    """The official Cutout code: mask[y1:y2, x1:x2] = 0 with y1 = clip(y - length // 2), y2 = clip(y + length // 2)."""
    mask = np.ones((height, width), np.float32)
    for y, x in centers:
        y1, y2 = np.clip(y - length // 2, 0, height), np.clip(y + length // 2, 0, height)
        x1, x2 = np.clip(x - length // 2, 0, width), np.clip(x + length // 2, 0, width)
        mask[y1:y2, x1:x2] = 0.0
    return torch.from_numpy(mask == 0)


def test_hole_geometry_matches_the_paper_including_border_clipping():
    height, width, length = 10, 8, 6
    # Corner and edge centers exercise the clipping; the last sample has two overlapping holes.
    centers = [[(0, 0)], [(9, 7)], [(5, 0)], [(4, 4)], [(2, 3), (3, 5)]]
    n_holes = max(len(c) for c in centers)
    padded = [c + [c[-1]] * (n_holes - len(c)) for c in centers]
    cy = torch.tensor([[y for y, _ in c] for c in padded])
    cx = torch.tensor([[x for _, x in c] for c in padded])
    holes = cutout_mask(cy, cx, length, height, width)
    for b, c in enumerate(centers):
        assert torch.equal(holes[b], paper_mask(height, width, c, length)), f"sample {b}"
    # Fully inside: a length x length square; at the corner (0, 0) only the quarter inside the image remains.
    assert holes[3].sum() == length * length
    assert holes[0].sum() == (length // 2) ** 2


def test_cutout_zero_fills_only_the_holes_and_keeps_the_targets():
    reg = create_regularizer("cutout", seed=3, length=4, n_holes=2)
    images = torch.randn(16, 3, 8, 8) + 5.0  # no pixel is zero by chance
    targets = torch.eye(4).repeat(4, 1)
    out, out_targets = reg.mix_batch(images, targets, torch.arange(16))
    zeroed = out == 0
    assert torch.equal(out_targets, targets)
    assert torch.equal(zeroed.all(dim=1), zeroed.any(dim=1))  # holes span all channels
    assert torch.equal(out[~zeroed], images[~zeroed])
    holes_per_image = zeroed[:, 0].sum(dim=(1, 2))
    assert (holes_per_image >= 1).all() and (holes_per_image <= 2 * 16).all()
    assert len(set(holes_per_image.tolist())) > 1  # independent holes per image, some clipped


def test_cutout_centers_are_uniform_over_the_image():
    reg = create_regularizer("cutout", seed=0, length=2, n_holes=1)
    counts, draws = torch.zeros(6, 6), 0
    for _ in range(60):
        out, _ = reg.mix_batch(torch.ones(64, 1, 6, 6), torch.ones(64, 2), torch.arange(64))
        counts += (out[:, 0] == 0).float().sum(dim=0)
        draws += 64
    # A side-2 hole centred at c covers rows c-1 and c: row r is covered by centers r and r+1, except the last
    # row (only center 5) -- uniform centers give these exact coverage rates, border clipping included.
    per_axis = torch.tensor([2, 2, 2, 2, 2, 1]) / 6
    expected = per_axis[:, None] * per_axis[None, :]
    torch.testing.assert_close(counts / draws, expected, atol=0.02, rtol=0)  # ~4 standard errors
