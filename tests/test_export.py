"""``mdm export`` / ``mdm.load_pretrained``: the folder's files, identical logits to the run's EMA model, no
pickle, no Lightning, and the folder accepted by ``mdm sample``, ``mdm eval`` and the lm-eval adapter."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import mdm
from mdm.cli import main
from mdm.config import load, to_dict
from mdm.data.meta import DataMeta
from mdm.data.tokenizer import CharTokenizer
from mdm.diffusion import build_objective
from mdm.export import ExportError, export_run, load_pretrained
from mdm.io import read_jsonl
from mdm.loading import load_run
from mdm.vocab import Vocab

TOK = CharTokenizer(sorted("abcdefghij ."))
VOCAB = Vocab(size=64, mask_id=TOK.n_real, eos_id=TOK.eos_id, bos_id=TOK.bos_id, pad_id=TOK.pad_id)
L = 16


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_data_dir(path):
    path.mkdir(parents=True)
    TOK.save(path)
    DataMeta(
        name="files",
        tokenizer="char",
        vocab_size=64,
        mask_id=TOK.n_real,
        bos_id=TOK.bos_id,
        eos_id=TOK.eos_id,
        pad_id=TOK.pad_id,
        dtype="uint16",
        tokenizer_file="tokenizer.json",
        sources=[{"name": "toy-prose", "version": "1", "licence": "CC0-1.0"}],
    ).to_json(path / "meta.json")
    return path


def make_run(path, data_dir, *overrides):
    """A run dir whose EMA weights differ from its trained ones (so exporting the wrong set is caught)."""
    cfg = load(
        [],
        [
            "data.name=files",
            f"data.dir={data_dir}",
            "model.depth=1",
            "model.aspect_ratio=32",
            "model.head_dim=32",
            f"model.seq_len={L}",
            "model.cond_dim=16",
            *overrides,
        ],
    )
    obj = build_objective(cfg, VOCAB)
    torch.manual_seed(0)
    model = obj.build_model(cfg, VOCAB)
    ema = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()}
    (path / "checkpoints").mkdir(parents=True)
    ck = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "global_step": 11,
        "mdm": {"config": to_dict(cfg), "vocab": dataclasses.asdict(VOCAB), "ema": ema},
    }
    torch.save(ck, path / "checkpoints" / "last.ckpt")
    summary = {
        "status": "completed",
        "params_non_embedding": 12345,
        "flops_per_token": 6.5e4,
        "tokens": 1000,
        "flops": 6.5e7,
        "val_loss": 2.5,
        "val_ppl_bound": 12.18,
        "wall_s": 3.0,
        "git_sha": "abc",
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("export")
    data = write_data_dir(r / "data")
    for name, extra in {
        "mdlm": ["objective.name=mdlm"],
        "sedd": ["objective.name=sedd", "model.tie_embeddings=true"],  # time-conditioned, tied head
        "ar": ["objective.name=ar"],
    }.items():
        make_run(r / name, data, *extra)
    return r


def logits(loaded, x):
    sigma = torch.full((x.shape[0],), 0.7) if loaded.model.time_conditioning else None
    with torch.no_grad():
        return loaded.model(x, sigma)


@pytest.mark.parametrize("name", ["mdlm", "sedd", "ar"])
def test_export_round_trip_has_identical_logits_to_the_ema_model(root, name):
    out = export_run(root / name, root / f"out_{name}")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    run, back = load_run(root / name), mdm.load_pretrained(out)
    x = torch.randint(0, VOCAB.mask_id, (3, L), generator=torch.Generator().manual_seed(1))
    assert torch.equal(logits(run, x), logits(back, x))
    raw = load_run(root / name, ema=False)
    assert not torch.equal(logits(raw, x), logits(back, x))  # the EMA weights, not the trained ones
    assert back.vocab == run.vocab and back.step == 11 and back.export_dir == out
    assert back.tokenizer.encode("abc") == TOK.encode("abc")
    if name == "sedd":
        assert back.model.head.weight is back.model.embed.weight  # re-tied
        assert json.loads((out / "config.json").read_text())["tied"] == {"head.weight": "embed.weight"}


def test_no_pickle_and_the_model_card(root):
    out = export_run(root / "mdlm", root / "out_card")
    for f in out.iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"PK", f"{f.name} looks like a pickle / torch zip"
    from safetensors.torch import load_file

    assert "embed.weight" in load_file(str(out / "model.safetensors"))
    card = (out / "README.md").read_text()
    for needle in ("mdlm", "12,345", "6.5e+04", "CC0-1.0", "toy-prose", "2.5", "No pickle"):
        assert needle in card, needle
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "mdm-export" and cfg["vocab"]["mask_id"] == VOCAB.mask_id
    assert cfg["weights"] == "ema" and cfg["config"]["objective"]["name"] == "mdlm"
    with pytest.raises(ExportError, match="not empty"):
        export_run(root / "mdlm", out)
    with pytest.raises(ExportError, match="already an exported folder"):
        export_run(out, root / "again")
    with pytest.raises(ExportError, match="not an mdm export folder"):
        load_pretrained(root / "mdlm")


def test_load_pretrained_needs_no_lightning(root):
    out = export_run(root / "ar", root / "out_nolightning")
    code = (
        "import sys, mdm; r = mdm.load_pretrained(sys.argv[1]); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]; "
        "assert not bad, bad; print(r.cfg.objective.name)"
    )
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ar"


def test_cli_export_then_sample_and_eval_the_folder(root, capsys):
    out = root / "out_cli"
    assert main(["export", str(root / "mdlm"), str(out)]) == 0, capsys.readouterr().err
    assert main(["sample", str(out), "--n", "2", "--steps", "3", "--prompt", "abc"]) == 0, (
        capsys.readouterr().err
    )
    rows = read_jsonl(out / "eval" / "samples.jsonl")
    assert all(r["text"].startswith("abc") for r in rows)
    text = root / "own.txt"
    text.write_text("abc def ghij. " * 40)
    rc = main(["eval", str(out), "--text", str(text), "--no-lambada-acc", "--min-blocks", "1"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "eval" / "zero_shot.json").read_text())
    assert report["results"]["own.txt"]["tokens_scored"] > 0


def test_lm_eval_adapter_takes_an_exported_folder(root):
    pytest.importorskip("lm_eval")
    from mdm.eval.lm_eval_adapter import MDMLM

    out = export_run(root / "ar", root / "out_lmeval")
    lm = MDMLM(pretrained=str(out))
    direct = MDMLM(pretrained=str(root / "ar"))

    class Req:
        def __init__(self, *args):
            self.args = args

    reqs = [Req("abc ", "def"), Req("hij", " a.")]
    assert lm.loglikelihood(reqs) == direct.loglikelihood(reqs)
