"""Prints, as JSON, the routes of the URL conf and the admin's models under the settings of the environment.

The production smoke test runs it with the web service's environment, so that it crawls the pages production
serves (the embedded engine's paths, for one, are not mounted there).
"""

import json

import django

# Route prefixes of features that a setting switches on.
SWITCHABLE = {"oidc/": "OIDC_ENABLED"}


def routes() -> dict[str, list[str]]:
    from django.conf import settings
    from django.contrib import admin
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[str] = []
    # Routes of features switched off in this configuration answer 404 by design: they are not pages here.
    switched_off = [prefix for prefix, setting in SWITCHABLE.items() if not getattr(settings, setting)]

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            regex = pattern.pattern.regex.pattern.lstrip("^").removesuffix(r"\Z").rstrip("$")
            if isinstance(pattern, URLResolver):
                # The admin is crawled by its model registry below; of the JSON API, its docs page.
                if pattern.namespace not in ("admin", "api"):
                    walk(pattern.url_patterns, prefix + regex)
            elif isinstance(pattern, URLPattern) and not (prefix + regex).startswith(tuple(switched_off)):
                found.append(prefix + regex)

    walk(get_resolver().url_patterns, "")
    models = [f"{model._meta.app_label}/{model._meta.model_name}" for model in admin.site._registry]
    return {"routes": found, "admin_models": models}


if __name__ == "__main__":
    django.setup()
    print(json.dumps(routes()))
