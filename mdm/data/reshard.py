"""Re-sharding a training loader's saved position for another rank or another number of ranks.

A checkpoint holds the position of rank 0's training loader (Lightning writes rank 0's state). Every
rank of a run has consumed the same number of blocks, so a rank of the same world size continues from
it with its own rank; a run resumed on ``W'`` ranks instead of ``W`` converts it through the global
stream. With ``n`` blocks, epoch ``e``'s global stream is ``perm_e[: W * (n // W)]`` read in order (rank
``r`` takes every ``W``-th block from ``r``: mdm/data/datamodule.py), so rank-local position ``p`` of
``W`` ranks is epoch ``e, o = divmod(p, n // W)`` at global offset ``g = o * W``, which is rank-local
position ``e * (n // W') + g / W'`` of ``W'`` ranks. Within an epoch the two world sizes read the same
blocks in the same order, so the resumed run neither repeats nor skips a block: it continues exactly as
an uninterrupted run on ``W'`` ranks would. (Only when ``n`` is not a multiple of ``W`` do the epochs'
dropped tails, fewer than ``W`` blocks each, differ between world sizes.)
"""

from __future__ import annotations

from typing import Any

from mdm.data.meta import DataError


def reshard_state(state: dict[str, Any] | None, rank: int, world_size: int) -> dict[str, Any] | None:
    """``state`` (a training loader's ``state_dict()`` from any rank) as rank ``rank`` of ``world_size``'s."""
    if state is None:
        return None
    if state.get("kind") == "mixture":
        subs = [reshard_state(s, rank, world_size) for s in state["sources"]]
        if any(s["world_size"] != world_size for s in state["sources"]):
            raise DataError(
                f"a data.mixture position saved with {state['sources'][0]['world_size']} ranks cannot be "
                f"resumed on {world_size}: each rank draws its own mixture order (resume on the same number)"
            )
        return {**state, "sources": subs}
    old = int(state["world_size"])
    if old == world_size:
        return {**state, "rank": rank}
    if state.get("mode", "train").split("-")[0] != "train":
        raise DataError("only a training loader's position can be re-sharded to another number of ranks")
    n, pos = int(state["num_blocks"]), int(state["position"])
    per_old, per_new = n // old, n // world_size
    if per_new == 0:
        raise DataError(f"{n} blocks are too few for world_size={world_size}")
    epoch, off = divmod(pos, per_old)
    g = off * old  # blocks of epoch `epoch` the whole run has consumed
    if g % world_size or g // world_size > per_new:
        raise DataError(
            f"the saved data position ({g} blocks into epoch {epoch}, saved on {old} ranks) is not a whole "
            f"number of batches on {world_size} ranks: keep train.global_batch as it was"
        )
    return {**state, "rank": rank, "world_size": world_size, "position": epoch * per_new + g // world_size}


__all__ = ["reshard_state"]
