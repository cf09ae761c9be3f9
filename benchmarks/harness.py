"""Timing helpers: interleaved repeats, medians, ratios.

The machine is shared and noisy, so every figure is the median of several
repeats, and the repeats of all configurations being compared are
interleaved (round-robin), so that a noisy moment hits all of them alike.
Only ratios between figures of the same run are meant to be compared.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.test import EnvironBuilder

Call = Callable[[], Any]


def environ(path: str, headers: dict[str, str] | None = None, remote_addr: str = "127.0.0.1") -> dict[str, Any]:
    return EnvironBuilder(path=path, headers=headers or {}, environ_base={"REMOTE_ADDR": remote_addr}).get_environ()


#: Environ values a server builds afresh for every request: new string
#: objects, whose hash Python has not computed yet (a dict look-up keyed by
#: one pays for hashing it, as it would behind a real server).
_PER_REQUEST = ("PATH_INFO", "RAW_URI", "REQUEST_URI", "HTTP_AUTHORIZATION", "HTTP_COOKIE")


def wsgi_call(app: Callable[..., Iterable[bytes]], env: dict[str, Any], expect: str = "200") -> Call:
    """A zero-argument call that runs one request through ``app``.

    Each call gets a fresh copy of ``env`` with fresh string objects for the
    values a server parses from each request.
    """
    status: list[str] = []
    fresh = [(key, value[:1], value[1:]) for key, value in env.items() if key in _PER_REQUEST and value]

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    def call() -> None:
        status.clear()
        request = dict(env)
        for key, head, tail in fresh:
            request[key] = head + tail
        result = app(request, start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
        if not status[0].startswith(expect):
            raise AssertionError(f"expected {expect}, got {status[0]}")

    return call


def per_call_ns(calls: dict[str, Call], *, number: int = 2000, repeats: int = 7, warmup: int = 200) -> dict[str, float]:
    """Median nanoseconds per call of each configuration, repeats interleaved."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter_ns() - start) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ns(
    calls: dict[str, Call],
    baseline: str,
    *,
    number: int = 200,
    rounds: int = 61,
    warmup: int = 300,
    settle: int = 20,
    baselines: dict[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-call medians, and each configuration's median paired difference from ``baseline``.

    The configurations are timed in many short rounds (see :func:`timed_rounds`);
    a round's difference (configuration minus baseline) is taken between times
    measured moments apart, so a noisy stretch of the machine hits both. The
    overhead figures are the medians of those differences. ``baselines`` names
    another baseline for some configurations (paired the same way).

    A name ``"config#i"`` is instance ``i`` of ``config``: the instances of a
    configuration are separate copies of the same app, and each round's time
    of the configuration is the mean over its instances (see :data:`INSTANCE`).
    """
    samples = timed_rounds(calls, number=number, rounds=rounds, warmup=warmup, settle=settle)
    grouped: dict[str, list[list[float]]] = {}
    for name, values in samples.items():
        grouped.setdefault(configuration_of(name), []).append(values)
    per_round = {
        name: [statistics.fmean(round_) for round_ in zip(*copies, strict=True)] for name, copies in grouped.items()
    }
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    against = baselines or {}
    overheads = {
        name: statistics.median(
            value - reference for value, reference in zip(values, per_round[against.get(name, baseline)], strict=True)
        )
        for name, values in per_round.items()
    }
    return medians, overheads


#: Separates a configuration's name from its instance number in :func:`paired_ns`.
INSTANCE = "#"


def configuration_of(name: str) -> str:
    """The configuration a call's name stands for: ``"bare_flask#2"`` -> ``"bare_flask"``."""
    return name.split(INSTANCE, 1)[0]


def timed_rounds(
    calls: dict[str, Call], *, number: int = 200, rounds: int = 61, warmup: int = 300, settle: int = 20
) -> dict[str, list[float]]:
    """Nanoseconds per call of each call, one figure per round.

    The calls are timed in many short rounds, in a shuffled order each round,
    each batch after ``settle`` untimed calls (steady state, as when one app
    serves request after request).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(names)  # no configuration always follows the same one (and its effect on the CPU caches)
        for name in names:
            call = calls[name]
            for _ in range(settle):  # the first requests after another app pay to refill the caches
                call()
            start = time.perf_counter_ns()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter_ns() - start) / number)
    return samples


def per_item_ns(make: Callable[[], list[Call]], *, repeats: int = 5) -> float:
    """Median ns per call where each call may run once only (cold paths): fresh calls each repeat."""
    samples = []
    for _ in range(repeats):
        calls = make()
        start = time.perf_counter_ns()
        for call in calls:
            call()
        samples.append((time.perf_counter_ns() - start) / len(calls))
    return statistics.median(samples)


def us(ns: float) -> str:
    return f"{ns / 1000:.2f} us"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"
