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
