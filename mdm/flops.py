"""Parameter and FLOP counting: the one place (sweeps and scaling read these numbers).

Conventions (docs/MATH.md "Counting"; PaLM, Chowdhery et al. 2022, App. B):

* ``params_total``: every trainable parameter (a tied head counted once).
* ``params_embedding``: the token embedding table plus an untied output head.
* ``params_non_embedding`` = total - embedding (Kaplan et al. 2020's N).
* ``n_matmul``: weights used in a matmul once per token: every block Linear plus the output head
  (tied or not); the embedding lookup is not a matmul. The time-conditioning MLP and adaLN run once
  per *sequence*; their share per token is ``n_cond / seq_len``.
* training FLOPs/token = 6 n_matmul + 12 n_layer d_model T (attention scores and values over T keys,
  forward 4 n_layer d T, backward twice that). Bidirectional attention has no causal halving; we do not
  halve for the causal baseline either (SDPA on CPU computes the full score matrix), so the two families
  are counted alike.
* what an objective spends beyond one forward and backward of the network it trains (frozen networks'
  forwards, extra passes: EDLM-NCE's base model and negatives, CCDD's encoder) is the objective's
  ``extra_flops_per_token`` (:meth:`mdm.diffusion.base.Objective.counts`), included in
  ``flops_per_token``; :func:`forward_flops_per_token` counts a frozen network's forward.
* a network may run some weights once per sequence (a pooled head: ``per_sequence``, counted with
  ``n_cond``) or compute logits it does not train through (``unused_head``: forward only, 2 FLOPs a weight).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

FLOP_CONVENTION = (
    "6*N_matmul + 12*n_layer*d_model*T per token (PaLM App. B; head included; no causal halving)"
    " + the objective's frozen networks and extra passes"
)


@dataclass(frozen=True)
class Counts:
    params_total: int
    params_embedding: int
    params_non_embedding: int
    n_matmul: int  # per-token matmul weights (blocks + head)
    n_cond: int  # per-sequence weights (time MLP + adaLN, a pooled head)
    n_layer: int
    d_model: int
    seq_len: int
    n_forward_only: int = 0  # per-token matmul weights run forward only (logits nothing trains through)
    extra_flops_per_token: float = 0.0  # the objective's frozen networks and extra passes (training FLOPs)

    @property
    def flops_per_token(self) -> float:
        """Training FLOPs per token: forward + backward of the network (backward = 2 forwards, except
        forward-only weights) plus the objective's extra passes."""
        return 3 * self.forward_flops_per_token - 4 * self.n_forward_only + self.extra_flops_per_token

    @property
    def forward_flops_per_token(self) -> float:
        """One forward of the network (the objective's extra passes not included)."""
        return (
            2 * (self.n_matmul + self.n_forward_only)
            + 4 * self.n_layer * self.d_model * self.seq_len
            + 2 * self.n_cond / self.seq_len
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flops_per_token"] = self.flops_per_token
        d["forward_flops_per_token"] = self.forward_flops_per_token
        d["flop_convention"] = FLOP_CONVENTION
        return d


def count(model, per_sequence: tuple[str, ...] = (), unused_head: bool = False) -> Counts:
    """Count the shared backbone (mdm.models.backbone.Transformer) by walking its modules.

    A wrapper network (an objective's extra head around the backbone) exposes it as ``.backbone``;
    its own trainable parameters count in the total (and, if Linear, as per-token matmuls, or as
    per-sequence weights when they sit under one of the wrapper's submodules named in ``per_sequence``).
    ``unused_head``: the backbone's logits are computed but nothing trains through them.
    """
    from torch import nn  # torch only where a network is walked: the sweep commands import this module

    wrapper = model
    model = getattr(model, "backbone", model)
    extra = [
        (n, p) for n, p in wrapper.named_parameters() if p.requires_grad and not n.startswith("backbone.")
    ]
    if wrapper is model:
        extra = []
    once = tuple(f"{m}." for m in per_sequence)
    extra_total = sum(p.numel() for _, p in extra)
    extra_matmul = sum(p.numel() for n, p in extra if p.dim() == 2 and not n.startswith(once))
    extra_cond = sum(p.numel() for n, p in extra if p.dim() == 2 and n.startswith(once))
    total = sum(p.numel() for p in model.parameters()) + extra_total
    embed = model.embed.weight
    head = model.head.weight
    params_embedding = embed.numel() + (0 if head is embed else head.numel())
    n_matmul = sum(
        m.weight.numel()
        for m in model.blocks.modules()
        if isinstance(m, nn.Linear) and not _is_cond(m, model)
    )
    n_matmul += extra_matmul + (0 if unused_head else head.numel())
    n_cond = extra_cond
    if model.time_embed is not None:
        n_cond += sum(m.weight.numel() for m in model.time_embed.modules() if isinstance(m, nn.Linear))
        n_cond += sum(m.lin.weight.numel() for m in model.modules() if m.__class__.__name__ == "AdaLN")
    dims = model.dims
    return Counts(
        params_total=total,
        params_embedding=params_embedding,
        params_non_embedding=total - params_embedding,
        n_matmul=n_matmul,
        n_cond=n_cond,
        n_layer=dims.depth,
        d_model=dims.d_model,
        seq_len=dims.seq_len,
        n_forward_only=head.numel() if unused_head else 0,
    )


def _is_cond(m, model) -> bool:
    return any(m is a.lin for a in model.modules() if a.__class__.__name__ == "AdaLN")


def forward_flops_per_token(model, seq_len: int, blocks: int | None = None) -> float:
    """FLOPs per token of one forward of a (frozen) backbone on ``seq_len`` tokens: the whole network
    (head included), or with ``blocks = k`` < depth the embedding and the first k blocks only (the
    hidden states of :func:`mdm.models.ccdd.hidden_states`; no final norm, no head)."""
    from torch import nn

    net = getattr(model, "backbone", model)
    c = replace(count(net), seq_len=seq_len)
    if blocks is None or blocks == c.n_layer:
        return c.forward_flops_per_token
    kept = net.blocks[:blocks]
    matmul = sum(
        m.weight.numel() for m in kept.modules() if isinstance(m, nn.Linear) and not _is_cond(m, net)
    )
    cond = sum(m.lin.weight.numel() for m in kept.modules() if m.__class__.__name__ == "AdaLN")
    if net.time_embed is not None:
        cond += sum(m.weight.numel() for m in net.time_embed.modules() if isinstance(m, nn.Linear))
    return 2 * matmul + 4 * blocks * c.d_model * seq_len + 2 * cond / seq_len


def tokens_for_flops(flops: float, counts: Counts) -> int:
    """Training tokens D that spend a FLOP budget C under this module's convention: D = C / flops_per_token."""
    return int(flops // counts.flops_per_token)
