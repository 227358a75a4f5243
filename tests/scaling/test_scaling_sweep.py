"""A 6-point IsoFLOP sweep on a tiny corpus, end to end: train, kill a point, resume exactly, fit, CLI errors."""
from __future__ import annotations

import dataclasses
import json

import pytest

from zerollm.scaling.sweep import ROWS, SweepConfig, plan, read_rows, run_sweep

WORDS = ("the cat sat on a mat while a dog ran in the park and birds sang over the quiet river near old "
         "stone bridges where children played games of chance every warm summer evening").split()


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tiny_bpe_tokenizer):
    import random

    from zerollm.data.prepare import data_prepare

    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + "." for _ in range(300)]
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tiny_bpe_tokenizer.save(root / "tok")
    data_prepare([root / "docs.jsonl"], root / "tok", root / "shards", val_fraction=0.1, show_progress=False)
    return root / "shards"


def _cfg(shards, out, **kw):
    return SweepConfig(data=str(shards), out=str(out), plan="isoflop", depths=[1, 2, 3], flops=["1e8", "2e8"],
                       aspect=16, head_dim=16, batch_size=2, seq_len=16, warmup_steps=2, min_steps=5,
                       eval_batches=4, ckpt_every=6, **kw)


def test_sweep_resumes_after_a_kill_and_fits(shards, tmp_path, monkeypatch, capsys):
    from zerollm.data.loader import TokenLoader
    from zerollm.stages.scaling import scaling_fit

    cfg = _cfg(shards, tmp_path / "sweep")
    points, _ = plan(cfg, 300)
    assert len(points) == 6 and len({p.tokens for p in points}) == 6
    victim = points[1]  # d2 at the first budget: killed during its 8th optimizer step
    assert victim.name == "d2-C1.00e08" and victim.steps > 8
    real_next, calls = TokenLoader.next_batch, {"n": 0}
    kill_at = points[0].steps + 8

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        return real_next(self)

    monkeypatch.setattr(TokenLoader, "next_batch", dying_next)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, progress=False)
    monkeypatch.setattr(TokenLoader, "next_batch", real_next)
    assert [r["name"] for r in read_rows(cfg.out)] == [points[0].name]
    rows = run_sweep(cfg, progress=False)
    assert len(rows) == 6
    resumed = next(r for r in rows if r["name"] == victim.name)
    assert resumed["resumed_from_step"] == 6  # its last checkpoint before the kill
    assert all(r["resumed_from_step"] == 0 for r in rows if r is not resumed)

    # exact resume: the same point trained without interruption ends at the same validation loss
    fresh = run_sweep(dataclasses.replace(cfg, out=str(tmp_path / "fresh"), depths=[2], flops=["1e8"]),
                      progress=False)
    assert fresh[0]["name"] == victim.name and fresh[0]["val_loss"] == pytest.approx(resumed["val_loss"], abs=1e-5)

    for r in rows:
        assert r["tokens"] == r["steps"] * 2 * 16 and r["val_bpb"] > 0 and r["params"] > r["params_non_embedding"]
        assert r["flops"] == pytest.approx(r["compute_budget"], rel=0.35)  # whole steps round the budget

    # a killed write leaves half a row; a lost row is retrained, nothing else is
    path = tmp_path / "sweep" / ROWS
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    capsys.readouterr()
    rows = run_sweep(cfg, progress=False)
    assert len(rows) == 6 and "5 already done, 1 to train" in capsys.readouterr().out
    assert all(json.loads(line) for line in path.read_text().splitlines()[:-2])

    fit = scaling_fit(tmp_path / "sweep", bootstrap=4)
    out = tmp_path / "sweep"
    for f in ("fit.json", "fit.md", "scaling_compute.png", "scaling_isoflop.png", "scaling_optimal.png"):
        assert (out / f).is_file()
    assert fit["points"] == 6 and fit["approach3"]["alpha"] > 0
    assert "tokens per parameter" in (out / "fit.md").read_text()


def test_sweep_and_fit_errors(shards, tmp_path, capsys):
    from zerollm import cli

    (tmp_path / "empty").mkdir()
    assert cli.main(["scaling", "fit", str(tmp_path / "empty")]) == 2
    assert "no finished points" in capsys.readouterr().err
    assert cli.main(["scaling", "sweep", "--data", str(shards), "--out", str(tmp_path / "s")]) == 2
    assert "needs compute budgets" in capsys.readouterr().err
    assert cli.main(["scaling", "sweep", "--data", str(shards), "--out", str(tmp_path / "s"), "--plan", "grid",
                     "--tokens", "10", "--depths", "x"]) == 2
    assert "depths must be positive integers" in capsys.readouterr().err
    (tmp_path / "notasweep").mkdir()
    (tmp_path / "notasweep" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        run_sweep(_cfg(shards, tmp_path / "notasweep"), progress=False)
    assert (tmp_path / "notasweep" / "mine.txt").read_text() == "keep"
    # a sweep dir made with other shared settings is refused, not mixed into
    small = dataclasses.replace(_cfg(shards, tmp_path / "done"), depths=[1], flops=["1e8"])
    run_sweep(small, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_sweep(dataclasses.replace(small, lr=1.0), progress=False)
    with pytest.raises(ValueError, match="inside --out"):
        run_sweep(dataclasses.replace(small, out=str(shards.parent)), progress=False)
