"""The two-headed network of CCDD: one shared backbone, token logits plus a per-token continuous output.

Single stream: the continuous input ``z`` (B, L, d_c) and a per-sequence level ``level`` (B,) (the noise
level of ``z``; sinusoidal features) are projected to the model width and added to the token embeddings
through the backbone's ``extra`` input. The token head is the backbone's own; the continuous head is a
linear map of the backbone's final hidden states (``return_hidden=True``).

Knows nothing of diffusion: ``level`` is just a scalar per sequence. With ``z=None`` the forward is
exactly the backbone's (no extra input), which is how the objective switches the continuous branch off.
Also here: :func:`hidden_states`, the states of a backbone after ``layer`` blocks (a frozen encoder).
"""

from __future__ import annotations

import torch
from torch import nn

from mdm.models.backbone import Transformer
from mdm.models.conditioning import sinusoidal

LEVEL_FEATURES = 16  # sinusoidal features of the level fed with z
LEVEL_SCALE = 1000.0  # level in [0, 1] -> [0, 1000] before the sinusoids (DiT's convention for t)


class CoevolutionNet(nn.Module):
    """tokens (B, L) [+ z (B, L, d_c), level (B,)] -> logits (B, L, V) [, continuous output (B, L, d_c)].

    ``d_cont == 0`` builds no continuous modules (the network *is* the backbone plus nothing).
    ``z_in`` starts at zero, so a fresh network ignores ``z`` and begins exactly as the backbone.
    """

    def __init__(self, backbone: Transformer, d_cont: int):
        super().__init__()
        self.backbone = backbone
        self.d_cont = d_cont
        if d_cont > 0:
            D = backbone.dims.d_model
            self.z_in = nn.Linear(d_cont + LEVEL_FEATURES, D, bias=False)
            nn.init.zeros_(self.z_in.weight)
            self.cont_head = nn.Linear(D, d_cont, bias=False)
            nn.init.normal_(self.cont_head.weight, std=backbone.cfg.init_std)
        else:
            self.z_in = self.cont_head = None

    @property
    def dims(self):
        return self.backbone.dims

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        level: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Without ``z``: the backbone's logits (B, L, V). With ``z`` (B, L, d_c) and ``level`` (B,):
        (logits (B, L, V), continuous output (B, L, d_c))."""
        if z is None:
            return self.backbone(x, sigma, key_mask=key_mask)
        if self.z_in is None:
            raise ValueError("this network was built without a continuous branch (d_cont=0) but got z")
        if level is None:
            raise ValueError("a continuous input z needs its level (B,)")
        B, L, d = z.shape
        if d != self.d_cont or (B, L) != tuple(x.shape):
            raise ValueError(
                f"z has shape {tuple(z.shape)}; expected ({x.shape[0]}, {x.shape[1]}, {self.d_cont})"
            )
        feats = sinusoidal(level * LEVEL_SCALE, LEVEL_FEATURES).to(z.dtype)  # (B, F)
        inp = torch.cat([z, feats[:, None, :].expand(B, L, LEVEL_FEATURES)], dim=-1)  # (B, L, d_c + F)
        logits, h = self.backbone(x, sigma, extra=self.z_in(inp), key_mask=key_mask, return_hidden=True)
        return logits, self.cont_head(h)  # (B, L, V), (B, L, d_c)


def resolve_layer(layer: int, depth: int) -> int:
    """Python-style layer index over [0, depth] (0 = token embeddings, depth = after the final norm)."""
    k = layer + depth + 1 if layer < 0 else layer
    if not 0 <= k <= depth:
        raise ValueError(
            f"layer {layer} is out of range for a depth-{depth} model (valid: {-depth - 1}..{depth})"
        )
    return k


@torch.no_grad()
def hidden_states(
    model: Transformer,
    x: torch.Tensor,
    layer: int,
    sigma: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """States (B, L, D) of ``model`` on tokens ``x`` after ``layer`` blocks (see :func:`resolve_layer`).

    ``layer = depth`` (or -1) is the final normed state the output head reads (adaLN modulation
    included for a time-conditioned model); 0 < k < depth the raw residual stream after block k.
    """
    k = resolve_layer(layer, model.dims.depth)
    if k == model.dims.depth:
        return model(x, sigma, key_mask=key_mask, return_hidden=True)[1]
    if (sigma is None) == model.time_conditioning:
        raise ValueError("time-conditioned encoders need sigma; time-agnostic ones take none")
    h = model.embed(x)  # (B, L, D)
    c = model.time_embed(sigma) if model.time_embed is not None else None
    for block in model.blocks[:k]:
        h = block(h, c, key_mask)
    return h
