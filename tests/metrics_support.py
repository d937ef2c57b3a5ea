"""Reading /metrics in tests: scrape with the suite's token and parse the Prometheus text format."""

from __future__ import annotations

from collections import defaultdict

import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families


def scrape_text(base_url: str, token: str | None = None) -> str:
    answer = requests.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {token or settings.METRICS_TOKEN}"}, timeout=20
    )
    assert answer.status_code == 200, answer.text[:500]
    return answer.text


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a scrape, by sample name (counters keep their `_total`, histograms have `_bucket` ...)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((dict(sample.labels), sample.value))
    return found


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(v for sample_labels, v in found.get(name, []) if labels.items() <= sample_labels.items())
