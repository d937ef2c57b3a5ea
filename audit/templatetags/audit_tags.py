from urllib.parse import urlencode

from django import template

register = template.Library()


@register.filter
def urlencode_dict(values: dict) -> str:
    """The audit page's filters as a query string (the links to older entries and to the export)."""
    return urlencode(values)
