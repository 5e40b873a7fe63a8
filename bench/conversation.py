"""What flow format v2 and durable timers cost the conversation core (issue 19).

    python -m bench.conversation [--conversations 2000] [--rounds 7] [--timers 10000]

Part 1, the decider per command: the same graph played with the same commands
in four variants, in one process, rounds interleaved (medians of the rounds):

* ``plain``: texts without templates, ``next`` without conditions (what a v1
  flow is; the baseline);
* ``v2``: every text a template (``{{ name | friend }}`` and an earlier
  answer), the questions' ``next`` conditional on earlier answers and context;
* ``v2-de``: the same with texts in two languages, played by a German visitor;
* ``v2-timers``: the same with an idle nudge and abandonment declared, plus
  what a runtime does per command for them (``pending_timers`` and the queue).

Each command is ``decide`` with its reply rendered (what the service does), over
the state the previous command left. Target: v2 at most 1.2x plain.

Part 2, timers: the memory of ``--timers`` pending timers (one conversation
each, both timers) in a :class:`TimerQueue` (tracemalloc), the CPU of keeping
them (a ``set`` per command), of finding the due ones, and of firing one
through the decider. Writes bench/results/conversation.json and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.commands import (
    AnswerQuestion,
    Command,
    FireTimer,
    PressButton,
    StartConversation,
    VisitorContext,
)
from schemas.flow import Flow
from schemas.flow_validation import validate_text
from services.conversation.decider import decide
from services.conversation.sealing import NoSealer
from services.conversation.state import ConversationState
from services.conversation.timers import Timer, TimerQueue, pending_timers
from services.policy_port import DecisionPoint, EdgeChoice

RESULTS = Path(__file__).resolve().parent / "results" / "conversation.json"
T0 = 1_796_000_000.0


def _flow_yaml(templates: bool, conditions: bool, locales: bool, timers: bool) -> str:
    def text(en: str, de: str) -> str:
        if templates:
            en, de = f"{en}, {{{{ name | friend }}}}", f"{de}, {{{{ name | Sie }}}}"
        return f"{{en: '{en}', de: '{de}'}}" if locales else f"'{en}'"

    def nxt(target: str) -> str:
        """The same target, plain or behind a condition on an earlier answer and the
        context that the decider must evaluate (the path is the same either way)."""
        if not conditions:
            return target
        return (
            f'[{{when: \'name != "" and context.device in ["mobile", "desktop"]\','
            f" to: {target}}}, {{to: {target}}}]"
        )

    head = "locales: [en, de]\n" if locales else ""
    if timers:
        head += "timers:\n  idle: {after: 60, message: 'Still there?'}\n  abandon_after: 1800\n"
    return f"""\
id: bench
version: 1
{head}start: ask_name
nodes:
  - id: ask_name
    kind: input
    text: {text("Hi! Your first name?", "Hallo! Ihr Vorname?")}
    store_as: name
    input: {{type: text, max_length: 40, personal: false}}
    next: roof
  - id: roof
    kind: question
    text: {text("What roof do you have", "Welches Dach haben Sie")}
    buttons:
      - {{id: flat, label: Flat, next: {nxt("size")}}}
      - {{id: pitched, label: Pitched, next: {nxt("bill")}}}
  - id: size
    kind: question
    text: {text("How big is it", "Wie groß ist es")}
    buttons:
      - {{id: small, label: Small, next: {nxt("note")}}}
      - {{id: large, label: Large, next: {nxt("bill")}}}
  - id: note
    kind: message
    text: {text("Good to know", "Gut zu wissen")}
    next: bill
  - id: bill
    kind: question
    text: {text("And your monthly bill", "Und Ihre Monatsrechnung")}
    buttons:
      - {{id: low, label: Low, next: {nxt("done")}}}
      - {{id: high, label: High, next: {nxt("done")}}}
  - id: done
    kind: end
    text: {text("Thanks", "Danke")}
"""


VARIANTS: dict[str, dict[str, bool]] = {
    "plain": {"templates": False, "conditions": False, "locales": False, "timers": False},
    "v2": {"templates": True, "conditions": True, "locales": False, "timers": False},
    "v2-de": {"templates": True, "conditions": True, "locales": True, "timers": False},
    "v2-timers": {"templates": True, "conditions": True, "locales": False, "timers": True},
}


def _flow(variant: str) -> Flow:
    flow, errors = validate_text(_flow_yaml(**VARIANTS[variant]), f"{variant}.yaml")
    if flow is None:
        raise SystemExit(f"{variant}: {errors}")
    return flow


class _FirstEdge:
    def choose(self, point: DecisionPoint) -> EdgeChoice:
        return EdgeChoice(chosen=point.candidates[0], propensity=1.0, policy_version="b", seed=1)


def _script(i: int, locale: str) -> list[Command]:
    cid = f"c{i:06d}"
    context = VisitorContext(device="mobile" if i % 2 else "desktop", locale=locale)
    at = T0 + i
    return [
        StartConversation(
            conversation_id=cid, seq=1, at=at, flow_id="bench", site_id="s", context=context
        ),
        AnswerQuestion(conversation_id=cid, seq=2, at=at, node_id="ask_name", value="Ada"),
        PressButton(
            conversation_id=cid, seq=3, at=at, node_id="roof", button_id=("flat", "pitched")[i % 2]
        ),
    ]


def _play(flow: Flow, scripts: list[list[Command]], timers: bool) -> tuple[float, int]:
    """Seconds of CPU for every command of ``scripts``, and the number of commands."""
    policy, no_key = _FirstEdge(), NoSealer()
    queue = TimerQueue()
    commands = 0
    started = time.process_time()
    for script in scripts:
        state = ConversationState(script[0].conversation_id)
        for command in script:
            state = decide(state, command, flow, policy, no_key, no_key).state
            if timers:
                queue.set(state.conversation_id, pending_timers(state, flow), "1")
            commands += 1
        # the rest of the path, whatever the conditions chose
        while state.status == "active":
            node = flow.node(state.current_node or flow.start)
            press = PressButton(
                conversation_id=state.conversation_id,
                seq=state.last_command_seq + 1,
                at=T0,
                node_id=node.id,
                button_id=node.buttons[0].id,
            )
            state = decide(state, press, flow, policy, no_key, no_key).state
            if timers:
                queue.set(state.conversation_id, pending_timers(state, flow), "1")
            commands += 1
    return time.process_time() - started, commands


def decider_part(conversations: int, rounds: int) -> dict[str, Any]:
    flows = {name: _flow(name) for name in VARIANTS}
    scripts = {
        name: [_script(i, "de-DE" if name == "v2-de" else "en-US") for i in range(conversations)]
        for name in VARIANTS
    }
    per: dict[str, list[float]] = {name: [] for name in VARIANTS}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for name in VARIANTS:
            seconds, commands = _play(flows[name], scripts[name], name == "v2-timers")
            per[name].append(seconds / commands * 1e6)
            counts[name] = commands
    medians = {name: statistics.median(v) for name, v in per.items()}
    base = medians["plain"]
    return {
        name: {
            "us_per_command_median": round(medians[name], 2),
            "us_per_command_rounds": [round(x, 2) for x in per[name]],
            "commands_per_round": counts[name],
            "ratio_to_plain": round(medians[name] / base, 3),
        }
        for name in VARIANTS
    }


def _timed(fn: Callable[[], object], repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        runs.append(time.process_time() - started)
    return statistics.median(runs)


def timers_part(pending: int) -> dict[str, Any]:
    flow = _flow("v2-timers")
    policy, no_key = _FirstEdge(), NoSealer()
    states = []
    for i in range(pending):
        state = ConversationState(f"t{i:06d}")
        state = decide(state, _script(i, "en")[0], flow, policy, no_key, no_key).state
        states.append(state)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    queue = TimerQueue()
    for state in states:
        queue.set(state.conversation_id, pending_timers(state, flow), "3")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    memory = sum(s.size_diff for s in after.compare_to(before, "filename"))

    def reschedule() -> None:
        for state in states:
            queue.set(state.conversation_id, pending_timers(state, flow), "3")
            queue.set(state.conversation_id, (), "")

    def find_due() -> None:
        fresh = TimerQueue()
        for state in states:
            fresh.set(state.conversation_id, pending_timers(state, flow), "3")
        due = fresh.pop_due(T0 + 10 * 86_400, limit=10**9)
        assert len(due) == 2 * pending, len(due)

    set_seconds = _timed(reschedule) / (2 * pending)
    due_seconds = _timed(find_due) / (2 * pending)
    fire_runs = []
    for state in states[: min(pending, 2000)]:
        timer = pending_timers(state, flow)[0]
        command = FireTimer(
            conversation_id=state.conversation_id,
            at=timer.due_at,
            timer=timer.timer,
            for_seq=timer.for_seq,
        )
        started = time.process_time()
        decide(state, command, flow, policy, no_key, no_key)
        fire_runs.append(time.process_time() - started)
    stale = Timer(T0, states[0].conversation_id, "idle", 0)
    return {
        "pending_conversations": pending,
        "pending_timers": 2 * pending,
        "queue_bytes": memory,
        "queue_bytes_per_10k_conversations": round(memory / pending * 10_000),
        "set_us_per_call": round(set_seconds * 1e6, 3),
        "schedule_and_pop_us_per_timer": round(due_seconds * 1e6, 3),
        "fire_idle_us_per_timer_median": round(statistics.median(fire_runs) * 1e6, 2),
        "cpu_ms_per_10k_timers_fired": round(statistics.median(fire_runs) * 1e7, 1),
        "stale_example": [stale.timer, stale.for_seq],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    decider = decider_part(args.conversations, args.rounds)
    timers = timers_part(args.timers)
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1m_at_start": round(load, 2),
        "decider": decider,
        "timers": timers,
        "target_v2_ratio": 1.2,
        "v2_within_target": decider["v2"]["ratio_to_plain"] <= 1.2,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(f"load average (1 min) at start: {load:.2f}")
    print("| variant | µs per command (median) | ratio to plain |")
    print("|---|---:|---:|")
    for name, row in decider.items():
        print(f"| {name} | {row['us_per_command_median']} | {row['ratio_to_plain']} |")
    print()
    print(f"| {args.timers:,} conversations with both timers pending | |")
    print("|---|---:|")
    print(f"| queue memory | {timers['queue_bytes'] / 1e6:.2f} MB |")
    print(f"| keep (set) per command | {timers['set_us_per_call']} µs |")
    print(f"| schedule + find due, per timer | {timers['schedule_and_pop_us_per_timer']} µs |")
    print(f"| fire one through the decider | {timers['fire_idle_us_per_timer_median']} µs |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
