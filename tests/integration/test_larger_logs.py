"""The unit tier's properties on larger logs and more seeds.

The unit tier checks each of these on a log just large enough to hold every
kind of event (a few dozen conversations, two seeds); here the same checks run
on the sizes they were first written for, and on more seeds, where a rarer
interleaving has a chance to show up.
"""

from __future__ import annotations

import asyncio

import pytest

from projector.report.fold import fold_funnel
from projector.write_set import funnel_key
from tests.integration import test_verify_core as verify
from tests.integration.test_policy_thompson import POINTS, choice_counts_agree_with_propensities
from tests.integration.test_readmodel import batches_of_any_size_give_the_oracles_read_models
from tests.support.readmodel_oracle import Oracle
from tests.support.traffic import simulate
from tests.unit.test_report_fold import batches


async def fold_agrees_with_the_read_model(conversations: int, seed: int) -> None:
    traffic = await simulate(conversations, seed=seed)
    oracle = await Oracle().fold(traffic.events)
    compared = 0
    for flow in ("solar-quote", "insurance-quote", "saas-demo"):
        for version, stats in fold_funnel(batches(traffic.events, 97), flow).items():
            want = await oracle.store.counters(funnel_key(flow, version))
            assert stats.counters() == want
            assert stats.leads > 0, (flow, seed)  # a funnel with conversions, not only drop-offs
            compared += 1
    assert compared == 3


@pytest.mark.parametrize("seed", [3, 11, 17, 29])
def test_the_report_fold_agrees_with_the_read_models_funnel(seed: int) -> None:
    asyncio.run(fold_agrees_with_the_read_model(400, seed))


# The replay verifier (tests/integration/test_verify_core.py): 6 to 12 conversations
# there; the sizes below are the ones the tests were written with, and more.


@pytest.mark.parametrize("conversations", [60, 200])
async def test_an_honest_uniform_log_is_reproduced_bit_for_bit(conversations: int) -> None:
    await verify.test_an_honest_uniform_log_is_reproduced_bit_for_bit(conversations)


@pytest.mark.parametrize("conversations", [30, 100])
async def test_the_journal_never_holds_contact_details_in_clear(conversations: int) -> None:
    await verify.test_the_journal_never_holds_contact_details_in_clear(conversations)


@pytest.mark.parametrize("conversations", [40])
async def test_a_tampered_decision_is_the_first_divergence(conversations: int) -> None:
    await verify.test_a_tampered_decision_is_the_first_divergence(conversations)


@pytest.mark.parametrize("conversations", [80, 200])
async def test_thompson_decisions_replay_from_the_archived_snapshot(conversations: int) -> None:
    await verify.test_thompson_decisions_replay_from_the_archived_snapshot(conversations)


@pytest.mark.parametrize("conversations", [40])
async def test_an_erased_key_leaves_everything_but_the_lead_details_verified(
    conversations: int,
) -> None:
    await verify.test_an_erased_key_leaves_everything_but_the_lead_details_verified(conversations)


@pytest.mark.parametrize("conversations", [40])
async def test_readable_lead_fields_with_an_erased_key_are_replayed_without_the_blob(
    conversations: int,
) -> None:
    await verify.test_readable_lead_fields_with_an_erased_key_are_replayed_without_the_blob(
        conversations
    )


# Thompson choices against their logged propensities (tests/integration/test_policy_thompson.py:
# 1,000 conversations a point there).


@pytest.mark.parametrize("n", [4000, 20000])
@pytest.mark.parametrize("key", list(POINTS))
def test_choice_frequencies_match_the_logged_propensities(key: tuple[str, str], n: int) -> None:
    choice_counts_agree_with_propensities(key, n)


@pytest.mark.parametrize("seed", [3, 7])
async def test_read_model_batches_of_any_size_give_the_oracles_read_models(seed: int) -> None:
    traffic = await simulate(300, seed=seed, spacing=900.0)
    oracle = await Oracle().fold(traffic.events)
    await batches_of_any_size_give_the_oracles_read_models(traffic, oracle, await oracle.read())
