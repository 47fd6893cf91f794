"""What every page shares: the Jinja2 environment (``templates``) over ``api/templates`` and the
static files' directory. Routers render with ``templates.TemplateResponse(request, "x.html", {...})``;
each template extends ``base.html`` and fills ``{% block content %}`` (and optionally ``title``)."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

#: The navigation bar: (label, path).
NAV = (("Jobs", "/jobs"), ("Datasets", "/datasets"), ("Models", "/models"), ("Predictions", "/predictions"))
templates.env.globals["nav"] = NAV
