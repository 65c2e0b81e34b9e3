"""What the webhook tells its operators: structured JSON log lines and Prometheus metrics."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from airgap.admission.cache import DecisionCache

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class JsonLog:
    """Structured logs: one JSON object per line (ts, level, msg and fields)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def __call__(self, level: str, msg: str, **fields: Any) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "level": level, "msg": msg, **fields}, default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed log stream never fails a review


class _Histogram:
    """A latency histogram over :data:`BUCKETS` (the caller holds the lock)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
        self.total += seconds

    def lines(self, name: str, help_text: str) -> list[str]:
        """HELP, TYPE, the cumulative buckets, sum and count in the exposition format."""
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, n in zip(BUCKETS, self.counts, strict=False):
            running += n
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        running += self.counts[-1]
        return out + [f'{name}_bucket{{le="+Inf"}} {running}', f"{name}_sum {self.total:.6f}",
                      f"{name}_count {running}"]


class Metrics:
    """Prometheus counters and latency histograms, rendered in the text exposition format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: dict[tuple[str, str], int] = {}
        self.reviews = _Histogram()
        self.reloads = 0
        self.reload_failures = 0
        self.deadline_exceeded = 0
        self.events: dict[str, int] = {}  # more counters by name (e.g. "busy"), rendered as <name>_total
        # The mutating webhook (/mutate): reviews answered, with and without a patch, and images pinned.
        self.mutation_seconds = _Histogram()
        self.mutations: dict[str, int] = {"patched": 0, "unchanged": 0}
        self.pinned_images = 0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.events[name] = self.events.get(name, 0) + n

    def observe(self, outcome: str, allowed: bool, seconds: float, deadline_hit: bool) -> None:
        with self._lock:
            key = (outcome, "true" if allowed else "false")
            self.decisions[key] = self.decisions.get(key, 0) + 1
            self.reviews.observe(seconds)
            self.deadline_exceeded += deadline_hit

    def observe_mutation(self, seconds: float, pinned: int) -> None:
        with self._lock:
            self.mutations["patched" if pinned else "unchanged"] += 1
            self.pinned_images += pinned
            self.mutation_seconds.observe(seconds)

    def render(self, cache: DecisionCache[Any], ready: bool, gauges: dict[str, float] | None = None,
               counters: dict[str, float] | None = None) -> str:
        """The exposition text; ``gauges`` and ``counters`` are more values by name (connections, slots)."""
        with self._lock:
            lines = ["# HELP airgap_webhook_decisions_total Admission reviews answered, by worst image verdict.",
                     "# TYPE airgap_webhook_decisions_total counter"]
            lines += [f'airgap_webhook_decisions_total{{result="{r}",allowed="{a}"}} {n}'
                      for (r, a), n in sorted(self.decisions.items())]
            lines += self.reviews.lines("airgap_webhook_review_seconds", "Time to answer one admission review.")
            lines += ["# HELP airgap_webhook_mutations_total Mutating reviews answered, with a patch or without.",
                      "# TYPE airgap_webhook_mutations_total counter"]
            lines += [f'airgap_webhook_mutations_total{{result="{r}"}} {n}' for r, n in self.mutations.items()]
            lines += self.mutation_seconds.lines("airgap_webhook_mutation_seconds",
                                                 "Time to answer one mutating review.")
            totals: dict[str, float] = {
                "cache_hits_total": cache.hits, "cache_misses_total": cache.misses,
                "cache_evictions_total": cache.evictions, "trust_reloads_total": self.reloads,
                "trust_reload_failures_total": self.reload_failures,
                "deadline_exceeded_total": self.deadline_exceeded, "busy_total": self.events.get("busy", 0),
                "pinned_images_total": self.pinned_images,
                **{f"{name}_total": value for name, value in sorted(self.events.items()) if name != "busy"},
                **{f"{name}_total": value for name, value in sorted((counters or {}).items())}}
            for name, value in totals.items():
                lines += [f"# TYPE airgap_webhook_{name} counter", f"airgap_webhook_{name} {_number(value)}"]
            values = {"cache_entries": len(cache), "ready": int(ready), **(gauges or {})}
            for name, value in values.items():
                lines += [f"# TYPE airgap_webhook_{name} gauge", f"airgap_webhook_{name} {_number(value)}"]
        return "\n".join(lines) + "\n"



def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
