"""`rlscale bench rollout` through the real engine and the real peer."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_rollout_bench_compares_equal_work(ray_session, tmp_path, capsys):
    from rlscale.cli import main

    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "rollout",
                "--model",
                "builtin:tiny",
                "--prompts",
                "4",
                "--group-size",
                "2",
                "--max-tokens",
                "8",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    # both sides generated exactly prompts x group x max_tokens tokens
    assert result["rlscale_vllm_tokens"] == result["hf_generate_tokens"] == 4 * 2 * 8
    assert result["ratio_vs_hf"] == pytest.approx(
        result["rlscale_vllm_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    )
    assert "ratio" in capsys.readouterr().out


def test_verify_bench_counts_real_verdicts():
    import argparse

    from rlscale.bench import bench_verify

    result = bench_verify(argparse.Namespace(seconds=0.5, programs=4))
    assert result["code_passed"] == result["code_programs"] == 4  # canonical solutions pass
    assert all(result[f"math_{k}_per_s"] > 0 for k in ("integer", "fraction", "latex"))
    assert result["math_integer_per_s"] > result["math_latex_per_s"]  # the fast path is faster
