"""Regions (issue 20): each region is a full stack serving its own visitors, and a
conversation is homed in the region that started it.

The home is part of the conversation id: ``eu~6f1c2a8e-...`` (the region's name,
``~``, a UUID). Every place that keys by conversation id (Kafka partitions,
Redis, the read models, the resume token that carries the id) carries the
home with it, and nothing needs a lookup table: a gateway reads the home of a
resumed conversation from the id its token names. A deployment without
regions (``LEADFLOW_REGION`` unset) makes plain UUIDs, as before, and treats
every id as its own.

Configuration (both modes, every gateway):

* ``LEADFLOW_REGION``: this region's name (``[a-z0-9]{1,16}``); empty: no regions;
* ``LEADFLOW_REGION_URLS``: where each region's visitors connect, as
  ``eu=wss://eu.bot.example.com/ws,us=wss://us.bot.example.com/ws``: a visitor
  who resumes a conversation of another region is sent there (a ``moved`` frame).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SEPARATOR = "~"
_NAME = re.compile(r"[a-z0-9]{1,16}")
_URL = re.compile(r"wss?://[A-Za-z0-9.\-\[\]:]+(?:/[A-Za-z0-9._~/\-]*)?")


class RegionConfigError(ValueError):
    """A region setting that cannot be used (named in the message)."""


def home_of(conversation_id: str) -> str:
    """The region a conversation is homed in ("" for an id made without regions)."""
    region, separator, _ = conversation_id.partition(SEPARATOR)
    return region if separator and _NAME.fullmatch(region) else ""


@dataclass(frozen=True, slots=True)
class Regions:
    """This region (``name``; "" without regions) and every region's socket URL."""

    name: str = ""
    urls: Mapping[str, str] = field(default_factory=dict)

    def homed(self, raw_id: str) -> str:
        """A new conversation's id, homed here."""
        return f"{self.name}{SEPARATOR}{raw_id}" if self.name else raw_id

    def elsewhere(self, conversation_id: str) -> str | None:
        """The home of a conversation another region serves; None when it is ours
        (or regions are off, or the id names no region)."""
        home = home_of(conversation_id)
        if not self.name or not home or home == self.name:
            return None
        return home

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Regions:
        name = env.get("LEADFLOW_REGION", "").strip()
        if name and not _NAME.fullmatch(name):
            raise RegionConfigError(
                f"LEADFLOW_REGION must be 1 to 16 lowercase letters or digits, got {name!r}"
            )
        urls: dict[str, str] = {}
        for item in filter(
            None, (p.strip() for p in env.get("LEADFLOW_REGION_URLS", "").split(","))
        ):
            region, equals, url = item.partition("=")
            region, url = region.strip(), url.strip()
            if not equals or not _NAME.fullmatch(region) or not _URL.fullmatch(url):
                raise RegionConfigError(
                    "LEADFLOW_REGION_URLS must be region=wss://host/ws pairs separated by"
                    f" commas; {item!r} is not one"
                )
            urls[region] = url
        if urls and not name:
            raise RegionConfigError(
                "LEADFLOW_REGION_URLS needs LEADFLOW_REGION (this region's name)"
            )
        return cls(name, urls)
