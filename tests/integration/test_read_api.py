"""The read API over HTTP (aiohttp's test server) on read models projected from
a realistic log: auth and the status-code policy, every endpoint, bad input."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from projector.api import create_read_api
from projector.engine import Projector
from projector.memory_store import InMemoryReadModel
from projector.views import LeadView
from projector.write_set import daily_flow_key, daily_site_key, funnel_key, utc_day
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, Event, LeadCaptured, NodeEntered, event_id
from schemas.flow import NodeKind
from services.catalog import FlowCatalog
from services.fakes import InMemoryKeyStore
from services.http_auth import hash_api_key, new_api_key
from services.sites import Site
from tests.support.traffic import EXAMPLES, T0, Traffic, simulate

ACME_KEY, GLOBEX_KEY, ADMIN_KEY = new_api_key(), new_api_key(), new_api_key()
SITES = {
    "acme": Site("acme", ("https://acme.example",), (), hash_api_key(ACME_KEY)),
    # globex runs only the SaaS demo flow: other flows' funnels are not its business
    "globex": Site("globex", ("https://globex.example",), ("saas-demo",), hash_api_key(GLOBEX_KEY)),
    "initech": Site("initech", ("https://initech.example",)),  # no key: admin only
}
CATALOG = FlowCatalog.from_directory(EXAMPLES)
SPACING = 300.0  # seconds between commands: the traffic spans several UTC days
FIRST_DAY = utc_day(T0)

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ACME, GLOBEX, ADMIN = bearer(ACME_KEY), bearer(GLOBEX_KEY), bearer(ADMIN_KEY)


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: InMemoryReadModel
    keys: ShreddableKeys
    traffic: Traffic

    async def get(
        self, path: str, headers: dict[str, str] | None = None, status: int = 200, /, **query: Any
    ) -> Any:
        response = await self.client.get(f"/api/v1{path}", headers=headers, params=query)
        body = await response.read()
        assert response.status == status, body
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        return orjson.loads(body)

    def conversations(self, site_id: str) -> list[str]:
        return [
            e.conversation_id
            for e in self.traffic.events
            if isinstance(e, ConversationStarted) and e.site_id == site_id
        ]

    def lead_events(self, site_id: str) -> list[LeadCaptured]:
        return [
            e for e in self.traffic.events if isinstance(e, LeadCaptured) and e.site_id == site_id
        ]

    async def all_leads(self, site_id: str) -> list[LeadView]:
        return (await self.store.leads(site_id, None, 10_000)).leads


class ShreddableKeys:
    """The simulation's key store, with deletions of its own: one simulated log
    serves every test, and a test that erases a lead leaves it intact."""

    def __init__(self, base: InMemoryKeyStore) -> None:
        self.base = base
        self.deleted: set[str] = set()

    async def get_or_create(self, conversation_id: str) -> bytes:
        raise AssertionError("the read API never creates keys")

    async def get(self, conversation_id: str) -> bytes | None:
        return None if conversation_id in self.deleted else await self.base.get(conversation_id)

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        found = await self.base.get_many(conversation_ids)
        return {cid: key for cid, key in found.items() if cid not in self.deleted}

    async def delete(self, conversation_id: str) -> bool:
        found = conversation_id not in self.deleted and await self.base.get(conversation_id)
        self.deleted.add(conversation_id)
        return bool(found)


_TRAFFIC: list[Traffic] = []


async def traffic() -> Traffic:
    """120 simulated visitors, simulated once per module (seeded: always the same log)."""
    if not _TRAFFIC:
        _TRAFFIC.append(await simulate(120, spacing=SPACING))
    return _TRAFFIC[0]


async def make_api(aiohttp_client: ClientFactory, catalog: FlowCatalog | None = CATALOG) -> Api:
    log = await traffic()
    store, keys = InMemoryReadModel(), ShreddableKeys(log.keys)
    await Projector(store, await store.current_namespace(), live=True).project(log.events)
    root = web.Application()
    root.add_subapp(
        "/api/v1",
        create_read_api(store, keys, SITES, catalog, admin_key_sha256=hash_api_key(ADMIN_KEY)),
    )
    return Api(await aiohttp_client(root), store, keys, log)


@pytest.fixture
async def api(aiohttp_client: ClientFactory) -> Api:
    return await make_api(aiohttp_client)


def assert_error(body: Any, code: str) -> None:
    """An error body: a code and a message, nothing else."""
    assert body == {"error": {"code": code, "message": body["error"]["message"]}}
    assert isinstance(body["error"]["message"], str)


def assert_no_contact_details(text: str) -> None:
    assert "@example.com" not in text
    assert "Visitor " not in text
    assert "+1415555" not in text  # phones are stored normalised (E.164)


# -- authentication --------------------------------------------------------------

ENDPOINTS = [
    "/conversations/c0000000",
    "/sites/acme/leads",
    "/sites/acme/daily",
    "/flows/solar-quote/funnel",
    "/flows/solar-quote/daily",
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {ACME_KEY}"},
        {"Authorization": ACME_KEY},
        bearer("not-a-key"),
        bearer(hash_api_key(ACME_KEY)),  # the stored digest is not the key
        {"X-Api-Key": "not-a-key"},
        {"X-Api-Key": ""},
    ],
)
async def test_no_or_invalid_key_is_401_without_data(
    api: Api, path: str, headers: dict[str, str] | None
) -> None:
    response = await api.client.get(f"/api/v1{path}", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await response.json(), "unauthorized")


async def test_401_comes_before_bad_input(api: Api) -> None:
    """Without a key, nothing about the parameters is checked (or revealed)."""
    body = await api.get("/sites/acme/leads", None, 401, cursor="!!!", limit="0")
    assert_error(body, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Api-Key": ACME_KEY},
        {"Authorization": f"bearer {ACME_KEY}"},
        {"Authorization": f"  Bearer   {ACME_KEY}  "},
    ],
)
async def test_key_in_x_api_key_or_any_case_bearer(api: Api, headers: dict[str, str]) -> None:
    body = await api.get("/sites/acme/leads", headers, limit=1)
    assert len(body["leads"]) == 1


async def test_a_site_without_a_key_is_read_by_the_admin_only(api: Api) -> None:
    assert await api.get("/sites/initech/leads", ADMIN) == {
        "site_id": "initech",
        "leads": [],
        "next_cursor": None,
    }
    assert_error(await api.get("/sites/initech/leads", ACME, 403), "forbidden")


# -- conversations -----------------------------------------------------------------


async def test_conversation_of_the_keys_site(api: Api) -> None:
    cid = next(
        e.conversation_id for e in api.lead_events("acme")
    )  # one with a lead, an answer or two and a completed transcript
    view = await api.store.conversation(cid)
    assert view is not None
    body = await api.get(f"/conversations/{cid}", ACME)
    assert body["conversation_id"] == cid
    assert body["site_id"] == "acme"
    assert body["flow_id"] == view.flow_id
    assert body["flow_version"] == view.flow_version
    assert body["status"] == view.status
    assert body["current_node"] == view.current_node
    assert body["last_seq"] == view.last_seq
    assert body["lead_captured"] is True
    assert body["answers"] == [{"node_id": n, "button_id": b} for n, b in view.answers]
    assert body["answers"]
    assert body["context"]["device"] == view.context.device
    assert body["context"]["utm_source"] == view.context.utm_source
    assert body["started_at"] == view.started_at
    assert body["lead_at"] == view.lead_at
    assert body["nodes"] == list(view.nodes)
    assert body["lead"]["status"] == "captured"
    assert "fields" not in body["lead"]  # contact details only from the leads endpoint
    assert_no_contact_details(orjson.dumps(body).decode())
    assert body["transcript"] == await api.store.transcript(cid, 0, 10_000)
    assert body["next_after_seq"] is None


async def test_transcript_pages_walk_every_entry_once(api: Api) -> None:
    cid = next(e.conversation_id for e in api.lead_events("globex"))
    everything = await api.store.transcript(cid, 0, 10_000)
    assert len(everything) > 5
    walked: list[Any] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        body = await api.get(f"/conversations/{cid}", GLOBEX, after_seq=after, limit=2)
        assert len(body["transcript"]) <= 2
        walked += body["transcript"]
        after = body["next_after_seq"]
        pages += 1
    assert walked == everything
    assert pages == (len(everything) + 1) // 2
    seqs = [e["seq"] for e in walked]
    assert seqs == sorted(set(seqs))


async def test_other_sites_conversation_is_the_same_404_as_an_unknown_one(api: Api) -> None:
    """A site's key cannot tell another site's conversation from a missing one."""
    globex_cid = api.conversations("globex")[0]
    other = await api.client.get(f"/api/v1/conversations/{globex_cid}", headers=ACME)
    missing = await api.client.get("/api/v1/conversations/c9999999", headers=ACME)
    assert other.status == missing.status == 404
    assert await other.read() == await missing.read()
    assert_error(await other.json(), "not_found")
    assert globex_cid not in (await other.text())
    # the admin and the owner see it
    assert (await api.get(f"/conversations/{globex_cid}", ADMIN))["site_id"] == "globex"
    assert (await api.get(f"/conversations/{globex_cid}", GLOBEX))["site_id"] == "globex"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": "0"}, "bad_limit"),
        ({"limit": "501"}, "bad_limit"),
        ({"limit": "-1"}, "bad_limit"),
        ({"limit": "ten"}, "bad_limit"),
        ({"limit": ""}, "bad_limit"),
        ({"limit": "1.5"}, "bad_limit"),
        ({"after_seq": "-1"}, "bad_after_seq"),
        ({"after_seq": "x"}, "bad_after_seq"),
        ({"after_seq": "9" * 40}, "bad_after_seq"),
    ],
)
async def test_conversation_bad_paging_is_400(api: Api, query: dict[str, str], code: str) -> None:
    cid = api.conversations("acme")[0]
    assert_error(await api.get(f"/conversations/{cid}", ACME, 400, **query), code)


async def test_conversation_limit_bounds_are_accepted(api: Api) -> None:
    cid = api.conversations("acme")[0]
    assert len((await api.get(f"/conversations/{cid}", ACME, limit=1))["transcript"]) == 1
    await api.get(f"/conversations/{cid}", ACME, limit=500)


# -- leads ---------------------------------------------------------------------------


def visitor_number(conversation_id: str) -> int:
    return int(conversation_id.lstrip("c"))


async def test_leads_newest_first_with_decrypted_details(api: Api) -> None:
    body = await api.get("/sites/acme/leads", ACME)
    leads = body["leads"]
    expected = await api.all_leads("acme")
    assert len(expected) == len(api.lead_events("acme")) > 0
    assert len(expected) <= 50 and body["next_cursor"] is None
    assert [lead["conversation_id"] for lead in leads] == [e.conversation_id for e in expected]
    order = [(lead["captured_at"], lead["conversation_id"]) for lead in leads]
    assert order == sorted(order, reverse=True)
    for lead, view in zip(leads, expected, strict=True):
        n = visitor_number(lead["conversation_id"])
        assert lead["status"] == "captured"
        # what the simulated visitor typed (tests/support/traffic.py)
        assert lead["fields"]["name"] == f"Visitor {n}"
        assert lead["fields"]["email"] == f"visitor{n}@example.com"
        assert lead["flow_id"] == view.flow_id
        assert lead["flow_version"] == view.flow_version
        assert lead["consent"] == view.consent
        assert lead["fields_present"] == list(view.fields_present)
        assert "site_id" not in lead or lead["site_id"] == "acme"


async def test_leads_pages_walk_every_lead_once_in_order(api: Api) -> None:
    for site, key in (("acme", ACME), ("globex", GLOBEX)):
        expected = [lead.conversation_id for lead in await api.all_leads(site)]
        walked: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            query = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
            body = await api.get(f"/sites/{site}/leads", key, **query)
            assert len(body["leads"]) <= 3
            walked += [lead["conversation_id"] for lead in body["leads"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert walked == expected
        assert len(set(walked)) == len(walked) == len(api.lead_events(site))
        assert pages == -(-len(expected) // 3)


async def test_admin_reads_every_sites_leads(api: Api) -> None:
    for site in ("acme", "globex"):
        body = await api.get(f"/sites/{site}/leads", ADMIN, limit=200)
        assert len(body["leads"]) == len(api.lead_events(site))


@pytest.mark.parametrize("path", ["/sites/acme/leads", "/sites/acme/daily"])
async def test_other_sites_key_is_403_without_data(api: Api, path: str) -> None:
    response = await api.client.get(f"/api/v1{path}", headers=GLOBEX)
    assert response.status == 403
    text = await response.text()
    assert_error(orjson.loads(text), "forbidden")
    assert_no_contact_details(text)
    assert not any(cid in text for cid in api.conversations("acme"))


async def test_403_comes_before_bad_input_and_unknown_sites(api: Api) -> None:
    assert_error(await api.get("/sites/acme/leads", GLOBEX, 403, cursor="!!!"), "forbidden")
    # a site's key cannot probe which other sites are configured
    assert_error(await api.get("/sites/nobody/leads", GLOBEX, 403), "forbidden")
    assert_error(await api.get("/sites/nobody/leads", ADMIN, 404), "not_found")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"cursor": "!!!"}, "bad_cursor"),
        ({"cursor": "abc"}, "bad_cursor"),
        ({"cursor": ""}, "bad_cursor"),
        ({"cursor": "WyJ4Il0"}, "bad_cursor"),  # base64 of a JSON list of the wrong shape
        ({"limit": "0"}, "bad_limit"),
        ({"limit": "201"}, "bad_limit"),
        ({"limit": "-5"}, "bad_limit"),
        ({"limit": "many"}, "bad_limit"),
    ],
)
async def test_leads_bad_cursor_or_limit_is_400(api: Api, query: dict[str, str], code: str) -> None:
    body = await api.get("/sites/acme/leads", ACME, 400, **query)
    assert_error(body, code)
    for value in query.values():
        assert len(value) < 3 or value not in body["error"]["message"]  # not echoed


async def test_leads_limit_bounds_are_accepted(api: Api) -> None:
    assert len((await api.get("/sites/acme/leads", ACME, limit=1))["leads"]) == 1
    await api.get("/sites/acme/leads", ACME, limit=200)


async def test_an_erased_lead_shows_erased_and_no_details(api: Api) -> None:
    erased = (await api.all_leads("acme"))[0].conversation_id
    assert await api.keys.delete(erased)
    assert await api.store.mark_erased(erased)
    body = await api.get("/sites/acme/leads", ACME)
    [lead] = [lead for lead in body["leads"] if lead["conversation_id"] == erased]
    assert lead["status"] == "erased"
    assert lead["fields"] is None
    n = visitor_number(erased)
    text = orjson.dumps(lead).decode()
    assert f"visitor{n}@" not in text and f"Visitor {n}" not in text
    others = [lead for lead in body["leads"] if lead["conversation_id"] != erased]
    assert others and all(lead["status"] == "captured" for lead in others)
    summary = (await api.get(f"/conversations/{erased}", ACME))["lead"]
    assert summary["status"] == "erased"


async def test_a_lead_whose_key_is_gone_shows_erased(api: Api) -> None:
    """Crypto-shredding alone (the read model not marked yet) already hides the details."""
    gone = (await api.all_leads("globex"))[-1].conversation_id
    await api.keys.delete(gone)
    body = await api.get("/sites/globex/leads", GLOBEX, limit=200)
    [lead] = [lead for lead in body["leads"] if lead["conversation_id"] == gone]
    assert lead["status"] == "erased" and lead["fields"] is None


async def test_contact_details_never_reach_the_logs(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await api.get("/sites/acme/leads", ACME, limit=200)
    assert any(lead["fields"] for lead in body["leads"])  # they were in the response
    await api.get("/sites/acme/leads", GLOBEX, 403)
    await api.get("/sites/acme/leads", ACME, 400, cursor="!!!")
    assert_no_contact_details(caplog.text)
    for lead in body["leads"]:
        for value in lead["fields"].values():
            if value not in ("true", "false"):
                assert value not in caplog.text


# -- funnels -------------------------------------------------------------------------


async def test_funnel_equals_the_stores_counters(api: Api) -> None:
    for flow_id in CATALOG.ids():
        flow = CATALOG.latest(flow_id)
        assert flow is not None
        counters = await api.store.counters(funnel_key(flow_id, flow.version))
        body = await api.get(f"/flows/{flow_id}/funnel", ADMIN)
        assert body == await api.get(f"/flows/{flow_id}/funnel", ADMIN, version=flow.version)
        assert body["flow_id"] == flow_id and body["flow_version"] == flow.version
        assert body["title"] == flow.title
        # nodes: every node of the flow, in the flow's order, with kind and text
        assert [n["node_id"] for n in body["nodes"]] == list(flow.nodes)
        for row in body["nodes"]:
            node = flow.nodes[row["node_id"]]
            assert row["kind"] == node.kind.value and row["text"] == node.text
            entered = counters.get(f"entered:{node.id}", 0)
            left = counters.get(f"left:{node.id}", 0)
            converted = counters.get(f"converted:{node.id}", 0)
            assert (row["entered"], row["left"], row["converted"]) == (entered, left, converted)
            if node.kind is NodeKind.END:
                assert row["drop_off"] is None and left == 0
            else:
                assert row["drop_off"] == entered - left >= 0
            expected_rate = round(converted / entered, 4) if entered else None
            assert row["conversion_rate"] == expected_rate
        # edges: every traversed edge with the store's count, the flow's others at 0
        edges = {f"{e['from']}>{e['to']}": e for e in body["edges"]}
        for key, value in counters.items():
            if key.startswith("edge:"):
                assert edges[key.removeprefix("edge:")]["count"] == value
            if key.startswith("edge_converted:"):
                assert edges[key.removeprefix("edge_converted:")]["converted"] == value
        for e in body["edges"]:
            assert e["to"] in flow.nodes[e["from"]].successors()
        # totals, also against the log itself
        for name in ("started", "completed", "leads", "rejected"):
            assert body["totals"][name] == counters.get(name, 0)
        started = [
            e
            for e in api.traffic.events
            if isinstance(e, ConversationStarted) and e.flow_id == flow_id
        ]
        assert body["totals"]["started"] == len(started) > 0
        assert body["totals"]["leads"] == sum(
            1
            for e in api.traffic.events
            if isinstance(e, LeadCaptured)
            and e.conversation_id in {s.conversation_id for s in started}
        )
        assert body["nodes"][0]["entered"] == len(started)  # every conversation starts at start


async def test_funnel_is_for_sites_that_run_the_flow(api: Api) -> None:
    await api.get("/flows/solar-quote/funnel", ACME)  # acme runs every flow
    await api.get("/flows/saas-demo/funnel", GLOBEX)
    assert_error(await api.get("/flows/solar-quote/funnel", GLOBEX, 403), "forbidden")
    assert_error(await api.get("/flows/solar-quote/daily", GLOBEX, 403), "forbidden")
    assert_error(await api.get("/flows/no-such-flow/funnel", GLOBEX, 403), "forbidden")


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/flows/no-such-flow/funnel", {}, 404, "not_found"),
        ("/flows/no-such-flow/daily", {}, 404, "not_found"),
        ("/flows/solar-quote/funnel", {"version": "99"}, 404, "not_found"),
        ("/flows/solar-quote/funnel", {"version": "0"}, 400, "bad_version"),
        ("/flows/solar-quote/funnel", {"version": "v1"}, 400, "bad_version"),
        ("/flows/solar-quote/funnel", {"version": ""}, 400, "bad_version"),
    ],
)
async def test_funnel_bad_input(
    api: Api, path: str, query: dict[str, str], status: int, code: str
) -> None:
    assert_error(await api.get(path, ADMIN, status, **query), code)


async def test_funnel_without_a_catalog_needs_a_version_and_has_no_texts(
    aiohttp_client: ClientFactory,
) -> None:
    api = await make_api(aiohttp_client, catalog=None)
    assert_error(await api.get("/flows/solar-quote/funnel", ADMIN, 400), "version_required")
    body = await api.get("/flows/solar-quote/funnel", ADMIN, version=1)
    counters = await api.store.counters(funnel_key("solar-quote", 1))
    assert body["title"] is None
    assert {n["node_id"] for n in body["nodes"]} == {
        k.split(":", 1)[1] for k in counters if k.startswith("entered:")
    }
    assert all(n["kind"] is None and n["text"] is None for n in body["nodes"])
    entered = [n["entered"] for n in body["nodes"]]
    assert entered == sorted(entered, reverse=True)  # busiest first
    assert body["totals"]["started"] == counters["started"]


# -- daily rollups --------------------------------------------------------------------


def days_of(api: Api) -> list[str]:
    return sorted({utc_day(e.at) for e in api.traffic.events})


async def test_daily_rollups_equal_the_stores_counters(api: Api) -> None:
    days = days_of(api)
    assert len(days) >= 3 and days[0] == FIRST_DAY

    def flow_of(site: str | None) -> Callable[[str, str], str]:
        return lambda flow, day: daily_flow_key(flow, day, site)

    for path, key, auth, of in [
        ("/sites/acme/daily", daily_site_key, ACME, "acme"),
        ("/sites/globex/daily", daily_site_key, ADMIN, "globex"),
        # a site's key: its own conversations of the flow only
        ("/flows/solar-quote/daily", flow_of("acme"), ACME, "solar-quote"),
        ("/flows/saas-demo/daily", flow_of("globex"), GLOBEX, "saas-demo"),
        # the admin: every site's together
        ("/flows/saas-demo/daily", flow_of(None), ADMIN, "saas-demo"),
    ]:
        body = await api.get(path, auth, **{"from": days[0], "to": days[-1]})
        assert body["from"] == days[0] and body["to"] == days[-1]
        assert [d["date"] for d in body["days"]] == days  # consecutive, none skipped
        for row in body["days"]:
            counters = await api.store.counters(key(of, row["date"]))
            for name in ("started", "completed", "leads"):
                assert row[name] == counters.get(name, 0)
        for name in ("started", "completed", "leads"):
            assert body["totals"][name] == sum(d[name] for d in body["days"])
    site = await api.get("/sites/acme/daily", ACME, **{"from": days[0], "to": days[-1]})
    assert site["totals"]["started"] == len(api.conversations("acme"))
    assert site["totals"]["leads"] == len(api.lead_events("acme"))


async def test_daily_days_without_traffic_are_zero(api: Api) -> None:
    body = await api.get("/sites/acme/daily", ACME, **{"from": "2025-11-01", "to": "2025-11-03"})
    assert body["days"] == [
        {"date": f"2025-11-0{d}", "started": 0, "completed": 0, "leads": 0} for d in (1, 2, 3)
    ]
    assert body["totals"] == {"started": 0, "completed": 0, "leads": 0}


async def test_daily_range_of_92_days_is_the_maximum(api: Api) -> None:
    body = await api.get(
        "/flows/solar-quote/daily", ADMIN, **{"from": "2025-09-01", "to": "2025-12-01"}
    )
    assert len(body["days"]) == 92
    assert body["totals"]["started"] > 0
    body = await api.get(
        "/sites/acme/daily", ACME, 400, **{"from": "2025-09-01", "to": "2025-12-02"}
    )
    assert_error(body, "bad_range")


async def test_daily_defaults_to_the_last_30_days(api: Api) -> None:
    body = await api.get("/sites/acme/daily", ACME)
    assert len(body["days"]) == 30
    body = await api.get("/sites/acme/daily", ACME, to=FIRST_DAY)
    assert body["to"] == FIRST_DAY and len(body["days"]) == 30
    assert (
        body["totals"]["started"]
        == (await api.store.counters(daily_site_key("acme", FIRST_DAY)))["started"]
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"from": "2025-13-01", "to": "2025-12-01"}, "bad_date"),
        ({"from": "2025-02-30", "to": "2025-03-01"}, "bad_date"),
        ({"from": "20251126", "to": "2025-11-27"}, "bad_date"),
        ({"from": "2025-11-26T00:00", "to": "2025-11-27"}, "bad_date"),
        ({"from": "26/11/2025", "to": "2025-11-27"}, "bad_date"),
        ({"from": "2025-11-26", "to": ""}, "bad_date"),
        ({"from": "2025-11-26", "to": "yesterday"}, "bad_date"),
        ({"from": "2025-11-27", "to": "2025-11-26"}, "bad_range"),
        ({"from": "2025-01-01", "to": "2025-12-31"}, "bad_range"),
        ({"from": "2024-01-01"}, "bad_range"),  # to defaults to today
        ({"to": "0001-01-01"}, "bad_range"),  # from defaults to 29 days earlier
        ({"from": "0000-01-01", "to": "0001-01-01"}, "bad_date"),
    ],
)
@pytest.mark.parametrize("path", ["/sites/acme/daily", "/flows/solar-quote/daily"])
async def test_daily_bad_dates_are_400(
    api: Api, path: str, query: dict[str, str], code: str
) -> None:
    assert_error(await api.get(path, ACME, 400, **query), code)


# -- the rest --------------------------------------------------------------------------


async def test_unknown_endpoint_and_method_are_json_errors(api: Api) -> None:
    assert_error(await api.get("/sites/acme", ACME, 404), "not_found")
    response = await api.client.post("/api/v1/sites/acme/leads", headers=ACME)
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert_error(await response.json(), "method_not_allowed")


@pytest.mark.parametrize("headers", [{}, bearer("not-a-key")])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/sites/acme/leads"), ("DELETE", "/conversations/x"), ("GET", "/sites/acme")],
)
async def test_401_comes_before_405_and_404(
    api: Api, method: str, path: str, headers: dict[str, str]
) -> None:
    """Regression (issue 14): a POST without a key was answered 405, though 401 is
    decided first (docs/read-api.md): without a key, not even the methods are told."""
    response = await api.client.request(method, f"/api/v1{path}", headers=headers)
    assert response.status == 401
    assert "Allow" not in response.headers
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await response.json(), "unauthorized")


def test_create_read_api_refuses_a_bad_admin_digest() -> None:
    store, keys = InMemoryReadModel(), InMemoryKeyStore()
    with pytest.raises(ValueError, match="SHA-256"):
        create_read_api(store, keys, SITES, CATALOG, admin_key_sha256=ADMIN_KEY)
    with pytest.raises(ValueError, match="must not be a site's key"):
        create_read_api(store, keys, SITES, CATALOG, admin_key_sha256=hash_api_key(ACME_KEY))


# -- tenants: a flow's aggregates per site ----------------------------------------------


def site_funnel_from_the_log(api: Api, flow_id: str, site_id: str | None) -> dict[str, int]:
    """started and, per node, conversations that entered it: counted from the log."""
    mine = {
        e.conversation_id
        for e in api.traffic.events
        if isinstance(e, ConversationStarted)
        and e.flow_id == flow_id
        and site_id in (None, e.site_id)
    }
    entered = {
        (e.conversation_id, e.node_id)
        for e in api.traffic.events
        if isinstance(e, NodeEntered) and e.conversation_id in mine
    }
    out = {"started": len(mine)}
    for _, node in entered:
        out[f"entered:{node}"] = out.get(f"entered:{node}", 0) + 1
    return out


def funnel_numbers(body: Any) -> dict[str, int]:
    out = {"started": body["totals"]["started"]}
    out.update({f"entered:{n['node_id']}": n["entered"] for n in body["nodes"] if n["entered"]})
    return out


async def test_two_sites_on_one_flow_id_each_see_only_their_own_funnel(api: Api) -> None:
    """acme and globex both run saas-demo: neither key sees the other's traffic,
    the admin sees both together (or one with ?site=)."""
    flow = "saas-demo"
    acme = await api.get(f"/flows/{flow}/funnel", ACME)
    globex = await api.get(f"/flows/{flow}/funnel", GLOBEX)
    every = await api.get(f"/flows/{flow}/funnel", ADMIN)
    assert (acme["site_id"], globex["site_id"], every["site_id"]) == ("acme", "globex", None)
    for body, site in ((acme, "acme"), (globex, "globex"), (every, None)):
        assert funnel_numbers(body) == site_funnel_from_the_log(api, flow, site), site
    assert 0 < acme["totals"]["started"] < every["totals"]["started"]
    assert 0 < globex["totals"]["started"] < every["totals"]["started"]
    for name in ("started", "completed", "leads", "rejected"):
        assert acme["totals"][name] + globex["totals"][name] == every["totals"][name]
    for a, g, e in zip(acme["nodes"], globex["nodes"], every["nodes"], strict=True):
        for name in ("entered", "left", "converted"):
            assert a[name] + g[name] == e[name]
    # the admin reads one site's funnel with ?site=; a site key may name only itself
    assert await api.get(f"/flows/{flow}/funnel", ADMIN, site="acme") == acme
    assert await api.get(f"/flows/{flow}/funnel", GLOBEX, site="globex") == globex
    assert_error(await api.get(f"/flows/{flow}/funnel", GLOBEX, 403, site="acme"), "forbidden")
    assert_error(await api.get(f"/flows/{flow}/funnel", ACME, 403, site="globex"), "forbidden")
    assert_error(await api.get(f"/flows/{flow}/funnel", ADMIN, 404, site="nobody"), "not_found")


async def test_two_sites_on_one_flow_id_each_see_only_their_own_daily_rollup(api: Api) -> None:
    days = days_of(api)
    span = {"from": days[0], "to": days[-1]}
    flow = "saas-demo"
    acme = await api.get(f"/flows/{flow}/daily", ACME, **span)
    globex = await api.get(f"/flows/{flow}/daily", GLOBEX, **span)
    every = await api.get(f"/flows/{flow}/daily", ADMIN, **span)
    assert (acme["site_id"], globex["site_id"], every["site_id"]) == ("acme", "globex", None)
    for body, site in ((acme, "acme"), (globex, "globex"), (every, None)):
        assert body["totals"]["started"] == site_funnel_from_the_log(api, flow, site)["started"]
    for a, g, e in zip(acme["days"], globex["days"], every["days"], strict=True):
        for name in ("started", "completed", "leads"):
            assert a[name] + g[name] == e[name]
    assert await api.get(f"/flows/{flow}/daily", ADMIN, site="globex", **span) == globex
    assert_error(await api.get(f"/flows/{flow}/daily", ACME, 403, site="globex"), "forbidden")


async def test_an_old_versions_funnel_shows_only_where_the_site_has_traffic(
    aiohttp_client: ClientFactory,
) -> None:
    """A version no longer served is found by its counters: a site's own, so that
    a site cannot learn that another site had traffic on it."""
    store = InMemoryReadModel()
    old = replace(started_event("g1", "globex"), flow_version=7)
    await Projector(store, await store.current_namespace(), live=True).project([old])
    root = web.Application()
    root.add_subapp(
        "/api/v1",
        create_read_api(
            store, InMemoryKeyStore(), SITES, CATALOG, admin_key_sha256=hash_api_key(ADMIN_KEY)
        ),
    )
    client = await aiohttp_client(root)
    for key, status in ((GLOBEX, 200), (ADMIN, 200), (ACME, 404)):
        response = await client.get("/api/v1/flows/saas-demo/funnel?version=7", headers=key)
        assert response.status == status
    response = await client.get("/api/v1/flows/saas-demo/funnel?version=7&site=acme", headers=ADMIN)
    assert response.status == 404


def started_event(cid: str, site: str, flow: str = "saas-demo") -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=T0,
        command_seq=1,
        flow_id=flow,
        flow_version=1,
        site_id=site,
        context=VisitorContext(),
    )


async def test_a_conversation_that_loops_counts_once_per_node(
    aiohttp_client: ClientFactory,
) -> None:
    """Through the API: a conversation going round role > team_size > role twice."""
    cid, store = "loop1", InMemoryReadModel()
    nodes = ["welcome", "role", "team_size", "role", "team_size", "role", "team_size"]
    events: list[Event] = [started_event(cid, "acme")]
    for seq, node in enumerate(nodes, start=2):
        events.append(
            NodeEntered(
                conversation_id=cid,
                seq=seq,
                id=event_id(cid, seq),
                at=T0 + seq,
                command_seq=seq,
                node_id=node,
                kind="question",
            )
        )
    namespace = await store.current_namespace()
    for event in events:  # one event per batch, a fresh projector each: views read back
        await Projector(store, namespace, live=True).project([event])
    root = web.Application()
    root.add_subapp(
        "/api/v1",
        create_read_api(
            store, InMemoryKeyStore(), SITES, CATALOG, admin_key_sha256=hash_api_key(ADMIN_KEY)
        ),
    )
    client = await aiohttp_client(root)
    for key in (ACME, ADMIN):
        response = await client.get("/api/v1/flows/saas-demo/funnel", headers=key)
        body = await response.json()
        rows = {n["node_id"]: n for n in body["nodes"]}
        assert (rows["role"]["entered"], rows["team_size"]["entered"]) == (1, 1)
        assert (rows["role"]["left"], rows["team_size"]["left"]) == (1, 1)
        edges = {(e["from"], e["to"]): e["count"] for e in body["edges"]}
        assert edges[("role", "team_size")] == 1
        assert body["totals"]["started"] == 1
