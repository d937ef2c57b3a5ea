"""The JSON API's documentation page, /api/v1/docs: Swagger UI served from this site.

ninja's own Swagger page (it renders its CDN template, ninja not being an installed app) loads Swagger UI from a
public CDN and starts it with an inline script: the site's Content Security Policy refuses both, and an install
without internet access could not load it at all. This page loads the copy vendored in static/vendor/swagger-ui/
and starts it from static/js/api-docs.js, so it runs under the same policy as every other page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja.openapi.docs import DocsBase

if TYPE_CHECKING:
    from ninja import NinjaAPI


class VendoredSwagger(DocsBase):
    """Renders templates/api/docs.html; the script reads its settings from the page's data attributes."""

    template_name = "api/docs.html"

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        context = {"title": api.title, "openapi_url": self.get_openapi_url(api, kwargs)}
        return render(request, self.template_name, context)
