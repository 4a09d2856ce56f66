"""What the platform's HTML pages share: one style and one way to render them.

Every page the platform writes (the model report and card, Data Docs, the use case's index) is
a single static file that needs nothing but itself and the files next to it: no scripts, no
fonts or styles from elsewhere, so it reads the same offline, behind a firewall, or from a
bucket. Links between pages are relative, so a folder of reports can be copied anywhere.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

STYLE = Markup("""<style>
 body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.5; color: #222; padding: 0 1rem; }
 h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
 h3 { font-size: 1.05rem; margin-top: 1.4rem; }
 .big { font-size: 1.3rem; } .ok { color: #17692f; } .no { color: #a12a1b; } .muted { color: #666; }
 table { border-collapse: collapse; } td, th { padding: .2rem .8rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
 td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
 td.broken { background: #fbe4e1; } nav { font-size: .9rem; margin-bottom: 1rem; }
 img { max-width: 100%; border: 1px solid #eee; margin: .5rem 0; } .note { color: #666; font-size: .9rem; }
</style>""")

_ENVIRONMENT = Environment(autoescape=select_autoescape(default=True))
_ENVIRONMENT.globals["style"] = STYLE


def render(template: str, **context: Any) -> str:
    """`template` (Jinja, HTML-escaped; `{{ style }}` is the shared style) with `context`."""
    return _ENVIRONMENT.from_string(template).render(**context)
