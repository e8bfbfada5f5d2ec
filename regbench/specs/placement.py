"""Where a transformer puts its norms: the `placement`, `mix_alpha` and `depth_scaling` norm keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from regbench.errors import ParamError, UserError, check
from regbench.specs.norms import NORM_TRAITS, NORMS

PLACEMENTS = ("pre", "post", "mix", "peri")
PLACEMENT_KEYS = ("placement", "mix_alpha", "depth_scaling")


@dataclass(frozen=True)
class Placement:
    """pre: x + f(norm(x)); post: norm(x + f(x)); mix: post in the first floor(mix_alpha * depth) blocks, pre
    after (Mix-LN); peri: x + norm(f(norm(x))) (Peri-LN). depth_scaling scales every norm output in block l
    (1-based) by 1 / sqrt(l) (LayerNorm Scaling)."""

    kind: str = "pre"
    mix_alpha: float = 0.25
    depth_scaling: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Placement":
        kind = params.get("placement", "pre")
        mix_alpha = params.get("mix_alpha", 0.25)
        depth_scaling = params.get("depth_scaling", False)
        check(kind in PLACEMENTS, "placement", kind, f"allowed: {', '.join(PLACEMENTS)}")
        check(isinstance(mix_alpha, (int, float)) and not isinstance(mix_alpha, bool) and 0 <= mix_alpha <= 1,
              "mix_alpha", mix_alpha, "must be a fraction of the blocks in [0, 1]")
        check(isinstance(depth_scaling, bool), "depth_scaling", depth_scaling, "must be true or false")
        return cls(kind, float(mix_alpha), depth_scaling)

    @property
    def is_default(self) -> bool:
        return self.kind == "pre" and not self.depth_scaling

    def block_kind(self, index: int, depth: int) -> str:
        """pre, post or peri for block `index` (0-based) of `depth`."""
        if self.kind == "mix":
            return "post" if index < int(self.mix_alpha * depth) else "pre"
        return self.kind


def split_norm_config(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any], Placement]:
    """The norm's name, its factory's parameters, and where a transformer puts it."""
    name = cfg["name"]
    NORMS.entry(name)
    params = {k: v for k, v in cfg.items() if k != "name"}
    placement = Placement()
    if NORM_TRAITS[name].tokens:  # only transformer-capable norms carry placement keys
        try:
            placement = Placement.from_params(params)
        except ParamError as err:
            raise UserError(str(err.at("norm"))) from None
        allowed = NORM_TRAITS[name].placements
        if allowed is not None and placement.kind not in allowed:
            raise UserError(f"norm.placement={placement.kind} is invalid for norm={name}: allowed: "
                            f"{', '.join(allowed)}")
        params = {k: v for k, v in params.items() if k not in PLACEMENT_KEYS}
    return name, params, placement
