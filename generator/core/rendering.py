"""Jinja rendering shared by every concept that writes files from templates/."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from generator.core.paths import TEMPLATES_DIR


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(template_name: str, /, **values: object) -> str:
    return template_environment().get_template(template_name).render(**values)
