"""The solar-quote population: the example flow's visitors and the truth every world
starts from (docs/policy-simulation.md, *The population*)."""

from __future__ import annotations

from policy.sim.population import EdgeEffect, Population
from schemas.flow import Flow

SOLAR_FLOW_ID = "solar-quote"


def solar_quote(flow: Flow, *, edge_scale: float = 1.0) -> Population:
    """The population of docs/policy-simulation.md for ``examples/flows/solar-quote.yaml``.

    ``edge_scale`` multiplies every edge effect (the smoke test uses a larger one)."""
    return Population(
        flow=flow,
        devices={"mobile": 0.58, "desktop": 0.32, "tablet": 0.07, "unknown": 0.03},
        sources={
            "search": 0.34,
            "paid": 0.22,
            "social": 0.17,
            "direct": 0.14,
            "email": 0.07,
            "other": 0.06,
        },
        languages={"en": 0.88, "other": 0.12},
        # relative arrivals by UK hour: quiet at night, a lunchtime bump, busiest 19-22h
        hourly_traffic=(
            *(0.25, 0.15, 0.1, 0.08, 0.08, 0.12),
            *(0.3, 0.55, 0.8, 0.9, 0.95, 1.0),
            *(1.1, 1.05, 0.95, 0.95, 1.0, 1.1),
            *(1.3, 1.5, 1.6, 1.5, 1.1, 0.6),
        ),
        arrivals_per_day=1_500.0,
        site_time_zone="Europe/London",
        answer_shares={
            "property": {"house": 0.64, "flat": 0.12, "business": 0.12, "renting": 0.12},
            "flat_roof": {"yes": 0.55, "no": 0.45},
            "roof": {"south": 0.33, "east_west": 0.35, "north": 0.14, "unsure": 0.18},
            "bill": {"low": 0.25, "mid": 0.45, "high": 0.30},
            "battery": {"yes": 0.4, "no": 0.35, "unsure": 0.25},
            "shading": {"none": 0.5, "some": 0.36, "heavy": 0.14},
            "timeframe": {"asap": 0.28, "months": 0.34, "researching": 0.38},
            "estimate_offer": {"yes": 0.6, "no": 0.4},
            "survey": {"yes": 0.45, "later": 0.55},
        },
        intercept=-1.25,
        context_effects={
            "device=mobile": -0.25,
            "device=tablet": -0.1,
            "device=unknown": -0.3,
            "source=search": 0.1,
            "source=paid": 0.15,
            "source=social": -0.35,
            "source=email": 0.3,
            "source=other": -0.1,
            "hour=morning": 0.05,
            "hour=evening": 0.1,
            "language=other": -0.2,
        },
        answer_effects={
            ("property", "flat"): -0.3,
            ("property", "business"): 0.2,
            ("bill", "low"): -0.5,
            ("bill", "high"): 0.4,
            ("timeframe", "asap"): 0.7,
            ("timeframe", "months"): 0.3,
            ("timeframe", "researching"): -0.6,
        },
        dead_ends=frozenset({("property", "renting"), ("flat_roof", "no")}),
        edge_effects={
            # skip the roof question: better on phones and for ad/social traffic
            ("property", "house"): {
                "bill": EdgeEffect(
                    -0.4,
                    {
                        "device=mobile": 0.9,
                        "device=tablet": 0.4,
                        "source=paid": 0.3,
                        "source=social": 0.3,
                    },
                )
            },
            # skip the shading question: worse for searchers and subscribers
            ("bill", "mid"): {
                "timeframe": EdgeEffect(
                    0.3,
                    {
                        "source=search": -0.8,
                        "source=email": -0.6,
                        "device=mobile": 0.3,
                        "hour=evening": -0.3,
                    },
                )
            },
            # no battery offer: the offer helps desktop and evening visitors, not ads
            ("bill", "high"): {
                "shading": EdgeEffect(
                    -0.6,
                    {
                        "device=mobile": 0.5,
                        "source=paid": 0.6,
                        "language=other": 0.7,
                        "hour=evening": -0.3,
                    },
                )
            },
            # the form at once rather than a reassurance first: phones and ads
            ("timeframe", "asap"): {
                "contact": EdgeEffect(
                    -0.3,
                    {"device=mobile": 0.8, "source=paid": 0.4, "hour=evening": -0.4},
                )
            },
            # the form (after a reassurance) rather than the estimate offer: ads and social
            ("timeframe", "researching"): {
                "contact_intro": EdgeEffect(
                    -0.8,
                    {"source=paid": 1.0, "source=social": 0.6, "language=other": 0.4},
                )
            },
        },
        edge_scale=edge_scale,
    )


def load_flow(flow_id: str = SOLAR_FLOW_ID) -> Flow:
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

    flow = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR).latest(flow_id)
    if flow is None:
        raise LookupError(f"no example flow {flow_id!r}")
    return flow
