"""Every simulator world end to end in fast mode (``python -m policy.sim --world W --fast``).

Each run drives the real ThompsonPolicy on two tiny real PyMC fits beside the
simple baselines and writes its JSON and figure: a world, an arm or a metric that
goes missing from the output, or an oracle that some arm beats in expected leads
(true probabilities, no luck of the draws), fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from policy.settings import PRODUCTION_ONLINE
from policy.sim.__main__ import main
from policy.sim.runner import ARMS
from policy.sim.worlds import WORLDS

ROW_KEYS = {
    "arm",
    "leads",
    "share_of_oracle",
    "lift_over_uniform",
    "expected_leads",
    "expected_share_of_oracle",
    "oracle_edge_share",
}


def run(world: str, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    return run_with([], world, tmp_path)


def run_with(extra: list[str], world: str, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    out, png = tmp_path / f"{world}.json", tmp_path / f"{world}.png"
    argv = ["--world", world, "--fast", "--json", str(out), "--png", str(png), *extra]
    assert main(argv) == 0
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    return doc, png


@pytest.mark.parametrize("world", list(WORLDS))
def test_world_runs_end_to_end_in_fast_mode(world: str, tmp_path: Path) -> None:
    doc, png = run(world, tmp_path)
    assert doc["world"] == world
    assert doc["config"]["conversations"] == WORLDS[world].fast_conversations
    table = {row["arm"]: row for row in doc["table"]}
    assert list(table) == list(ARMS)
    for row in table.values():
        assert set(row) >= ROW_KEYS
    oracle = table["oracle"]["expected_leads"]
    for arm, row in table.items():
        assert row["expected_leads"] <= oracle + 1e-9, arm
    assert table["oracle"]["oracle_edge_share"] == 1.0
    assert 0.4 <= table["uniform"]["oracle_edge_share"] <= 0.6

    summary = doc["summary"]
    assert summary["best_simple_baseline"] in {"uniform", "default", "cell_bb", "answers_bb"}
    assert 0.0 < summary["production_share_of_oracle"] <= 1.0
    versus = doc["versus_uniform"]
    for kind in ("leads", "expected"):
        low, high = versus[kind]["ci95"]
        assert low <= versus[kind]["points"] <= high
    recovery = doc["recovery"]
    assert set(recovery["conversations"]) == {"thompson", "cell_bb", "answers_bb"}
    if world == "drift":
        assert recovery["flip_at"] == WORLDS[world].fast_conversations // 2
    else:
        assert recovery["flip_at"] is None
        assert set(recovery["conversations"].values()) == {None}

    assert doc["between_fits"] == "online"  # production's default: the online learner
    assert doc["config"]["half_life"] == PRODUCTION_ONLINE.half_life
    assert doc["conjugate_updates"] > 0  # its posteriors were published between fits
    assert len(doc["fits"]) == 2
    assert any(f["installed"] for f in doc["fits"]), doc["fits"]
    series = doc["series"]
    assert series["conversations"][-1] == WORLDS[world].fast_conversations
    for arm in ARMS:
        assert len(series[arm]["expected_leads"]) == len(series["conversations"])
    assert set(doc["population"]["beta_bernoulli_keys"]) == {"cell_bb", "answers_bb"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_seeds_give_each_seed_s_metrics_and_their_interval(tmp_path: Path) -> None:
    """``--seeds``: one run per seed (each its own visitors and draws), the seeds'
    rows as a single run with that seed reports them, and the mean over them."""
    out = tmp_path / "seeds.json"
    argv = ["--world", "drift", "--fast", "--first-fit", "1000000", "--json"]
    assert main([*argv, str(out), "--seeds", "3", "4"]) == 0
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    assert [row["seed"] for row in doc["seeds"]] == [3, 4]
    assert "seed" not in doc["config"]
    single, _ = run_with(["--seed", "4", "--first-fit", "1000000"], "drift", tmp_path)
    row = doc["seeds"][1]
    assert row["share"] == pytest.approx(100 * single["summary"]["production_share_of_oracle"])
    assert row["recovery"] == single["recovery"]["conversations"]["thompson"]
    assert doc["seeds"][0]["share"] != row["share"]  # another seed, another run
    share = doc["summary"]["share"]
    assert share["mean"] == pytest.approx((doc["seeds"][0]["share"] + row["share"]) / 2)
    low, high = share["ci95"]
    assert low < share["mean"] < high
    recovery = doc["summary"]["recovery"]
    assert recovery["recovered"] + recovery["never"] == 2
