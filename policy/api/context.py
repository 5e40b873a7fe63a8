"""What every handler of the policy API reads from its application.

:class:`PolicyApiContext` holds the service's parts the handlers use (the policy
and its installed snapshots, the reward ledger, the fitting schedule, the flow
catalog, the admin key, the control log); :data:`POLICY_API` is the key it is
stored under in the aiohttp application, :data:`PUBLIC` the key of the paths that
need no admin key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aiohttp import web

from policy.change_answer import change_wait_seconds
from policy.control_feed import ControlFeed
from policy.fitting import FitScheduler
from policy.rewards import RewardLedger
from policy.thompson import ThompsonPolicy
from services.catalog import FlowCatalog


@dataclass(frozen=True, slots=True)
class PolicyApiContext:
    policy: ThompsonPolicy
    ledger: RewardLedger | None = None
    scheduler: FitScheduler | None = None
    catalog: FlowCatalog | None = None
    admin_key_sha256: str | None = None
    control: ControlFeed | None = None
    # how long a change's answer waits for a snapshot that carries it (both modes'
    # composition roots build the context: the variable is read here, once, for both)
    change_wait_seconds: float = field(default_factory=lambda: change_wait_seconds(os.environ))


POLICY_API = web.AppKey("policy_api", PolicyApiContext)
PUBLIC = web.AppKey("policy_public_paths", frozenset)
