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


def dataset_href(uri: str, roots) -> str | None:
    """The page of the dataset at ``uri`` (a local preprocess output inside ``roots``), or None."""
    from vitalflow.api.data import NotFound, encode_id

    if "://" in uri:
        return None
    try:
        return f"/datasets/{encode_id(Path(uri), roots)}"
    except NotFound:  # outside the roots: no page
        return None


def model_href(uri: str) -> str:
    """The registry page (the models router owns the URL)."""
    return "/models"


templates.env.globals.update(dataset_href=dataset_href, model_href=model_href)
