"""``mdm demo``: the main job on the embedded default (placeholder until the sweep lands):
prepare the books corpus, train the default tiny MDLM, print its validation perplexity bound."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default corpus")
    p.set_defaults(func=run)


def run(args) -> int:
    from mdm.config import load
    from mdm.train import train

    s = train(load(["configs/mdlm.yaml"], []))
    print(f"validation perplexity bound: {s['val_ppl_bound']:.2f} ({s['val_loss']:.4f} nats/token)")
    return 0
