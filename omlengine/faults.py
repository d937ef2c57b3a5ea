"""Injected faults, for tests and benchmarks only (off unless OMLENGINE_FAULTS is set).

Spec: comma-separated `kind=fraction` pairs, e.g. "500=0.1,503=0.1,delay=0.05,malformed=0.05,nolocation=0.05",
plus optionally `delay_seconds=<s>` (default 2). They apply to the /oml/api/py-scripts/ endpoints, not to
the token endpoint.

- `500`, `503`: answer that status with an error body *instead of* handling the request, so the engine's state
  never changes (a POST so answered created no job; a status request so answered was not counted).
- `delay`: handle the request after sleeping `delay_seconds`.
- `slowresult`: the same, for result downloads only (GET .../jobs/<id>/result): a slow result and nothing else.
- `malformed`: handle the request, then replace a JSON body with a truncated one.
- `nolocation`: handle the request, then drop the Location header of a 201.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse, JsonResponse

from .errors import ENGINE_FAILURE, SERVICE_UNAVAILABLE

_KINDS = ("500", "503", "delay", "slowresult", "malformed", "nolocation")


@dataclass(frozen=True)
class Faults:
    fractions: dict[str, float]
    delay_seconds: float = 2.0

    def draw(self, kind: str) -> bool:
        return random.random() < self.fractions.get(kind, 0.0)


@functools.cache
def configured() -> Faults:
    return parse(settings.OMLENGINE_FAULTS)


def parse(spec: str) -> Faults:
    """Parse a fault spec, failing loudly on anything unknown."""
    fractions: dict[str, float] = {}
    delay_seconds = 2.0
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            raise ImproperlyConfigured(f"OMLENGINE_FAULTS: {item!r} needs a number after '='.") from None
        if kind == "delay_seconds":
            delay_seconds = value
        elif kind in _KINDS and 0 <= value <= 1:
            fractions[kind] = value
        else:
            raise ImproperlyConfigured(f"OMLENGINE_FAULTS: {item!r} is not one of {_KINDS} with a fraction 0..1.")
    if fractions.get("500", 0) + fractions.get("503", 0) > 1:
        raise ImproperlyConfigured("OMLENGINE_FAULTS: the 500 and 503 fractions add up to more than 1.")
    return Faults(fractions, delay_seconds)


def before(faults: Faults, path: str = "") -> HttpResponse | None:
    """An error answer that replaces handling the request, or None; sleeps first when a delay is drawn."""
    if faults.draw("delay") or (path.endswith("/result") and faults.draw("slowresult")):
        time.sleep(faults.delay_seconds)
    draw = random.random()
    if draw < faults.fractions.get("500", 0):
        return JsonResponse({"errorCode": ENGINE_FAILURE, "errorMessage": "Injected fault: internal error"}, status=500)
    if draw < faults.fractions.get("500", 0) + faults.fractions.get("503", 0):
        message = "Injected fault: Unable to reserve a STANDARD resource, try again later"
        return JsonResponse({"errorCode": SERVICE_UNAVAILABLE, "errorMessage": message}, status=503)
    return None


def after(faults: Faults, response: HttpResponse) -> HttpResponse:
    """Damage a handled answer without touching what the handling did."""
    if response.status_code == 201 and faults.draw("nolocation"):
        del response["Location"]
    if (
        response.get("Content-Type", "").startswith("application/json")
        and response.content
        and faults.draw("malformed")
    ):
        response.content = response.content[: max(1, len(response.content) // 2)]
    return response
