"""The model card: one page per model version saying what the model is for, what it was built
from, how well it does overall and for each part of its examples, what drives it, how its
probabilities were calibrated and what the gate decided, written from what the platform
recorded (the run, the gate's decision) and the intended use and limits the use case declares.

Written by the report stage beside the report, from the same figures (`pipelines.report`
builds one context for both, so they cannot disagree), as Markdown and HTML, logged to the
version's run under `card/` and carried in the Bento with the model (`pipelines.package`,
which refuses a champion without one).
"""

from __future__ import annotations

from typing import Any

import markdown_it
from jinja2 import Environment

from pipelines import pages

# The card's files, in the run's artifacts (`card/`), the report's folder and the Bento.
CARD_DIR = "card"
CARD_MARKDOWN = "model_card.md"
CARD_HTML = "model_card.html"

MARKDOWN = """# Model card: {{ model_name }} version {{ version }}

{{ question }}

## Intended use

{{ intended_use or "The use case declares no intended use." }}

## Limits

{% for limit in limits %}- {{ limit }}
{% else %}- The use case declares none.
{% endfor %}

## Data

- Learned from {{ train_rows }} {{ items }} ({{ train_window }}), tuned and calibrated on {{ validation_rows }} ({{ validation_window }}), tested on {{ test_rows }} ({{ test_window }}).
- {{ data_summary }}
{% for table in drops %}- {{ table.name }}: {{ table.drops }} deliveries, {{ table.checked }} with a passed check
{% endfor %}

## Inputs

{% for feature in inputs %}- `{{ feature.name }}`: {{ feature.description }}
{% endfor %}

## How it was made

- {{ made_with }}
{% if tuning %}- {{ tuning }}
{% endif %}- {{ calibration }}

## How well it does (test)

| measure (test) | value |
|---|---|
{% for row in figures %}| {{ row.name }} | {{ row.value }} |
{% endfor %}

## For each part of the {{ items }} (test)

{% if slice_rows %}| part | {{ items }} | {{ slice_metric }} | {{ slice_second }} |
|---|---|---|---|
{% for row in slice_rows %}| {{ row.part }} | {{ row.rows }} | {{ row.metric }} | {{ row.second }} |
{% endfor %}{% else %}The use case declares no slices.
{% endif %}

## What drives its answers

{% for item in drivers %}{{ loop.index }}. {{ item.text }} ({{ item.share }})
{% endfor %}
Measured as SHAP values over {{ explained_rows }} test {{ items }}: how much each input moved each prediction ({{ explained_output }}).

## The gate's decision

**{{ decision_text }}** {{ reason }}
{% if comparison %}

| measure | this version | model in service |
|---|---|---|
{% for row in comparison %}| {{ row.name }} | {{ row.new }} | {{ row.old }} |
{% endfor %}{% endif %}

Generated from MLflow run `{{ run_id }}`.
"""

HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Model card: {{ model_name }} version {{ version }}</title>
{{ style }}</head><body>
{{ body }}
</body></html>
"""


def render(context: dict[str, Any]) -> tuple[str, str]:
    """The card as (Markdown, HTML), from the report's context."""
    environment = Environment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
    text = environment.from_string(MARKDOWN).render(**context)
    body = markdown_it.MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return text, pages.render(HTML, body=_Markup(body), **context)


class _Markup(str):
    """Markdown's HTML, already escaped by the renderer (it refuses raw HTML)."""

    def __html__(self) -> str:
        return str(self)
