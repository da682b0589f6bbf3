"""`/docs`: the OpenAPI document (`/docs/openapi.json`) and a viewer for it, served by this server.

The viewer is Swagger UI from the pinned PyPI package `swagger-ui-py` (requirements.txt), whose
wheel ships Swagger UI's built files: nothing is fetched from a CDN, so `/docs` works offline and in
mainland China, and no third-party file is copied into this repository. Only the three files the
page needs are served.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Sanic
from sanic.response import html, json, raw

VIEWER_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/docs/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
  defaultModelsExpandDepth: 0, displayRequestDuration: true, persistAuthorization: true
}});
</script>
</body>
</html>
"""


def viewer_dir() -> Path:
    from swagger_ui.utils import SWAGGER_UI_PY_ROOT

    return Path(SWAGGER_UI_PY_ROOT) / "static"


def install(app: Sanic) -> None:
    from miniprogram_api.docs import TITLE, build_document

    @app.get("/docs/openapi.json")
    async def openapi_document(request):
        """The OpenAPI document (built once per process from the code)."""
        document = getattr(request.app.ctx, "openapi_document", None)
        if document is None:
            document = request.app.ctx.openapi_document = build_document(request.app)
        return json(document)

    @app.get("/docs", strict_slashes=False)
    async def viewer(request):
        return html(PAGE.format(title=TITLE), headers={"Cache-Control": "no-cache"})

    @app.get("/docs/static/<name:str>")
    async def viewer_file(request, name: str):
        if name not in VIEWER_FILES:
            from models.errors import NotFound

            raise NotFound()
        data = (viewer_dir() / name).read_bytes()
        return raw(data, content_type=VIEWER_FILES[name], headers={"Cache-Control": "public, max-age=86400"})
