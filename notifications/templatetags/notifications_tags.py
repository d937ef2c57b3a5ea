from django import template

from notifications import selectors

register = template.Library()


@register.simple_tag
def unread_notifications(user) -> int:
    return selectors.unread_count(user)


@register.simple_tag
def job_notifications(user, job) -> list:
    """The deliveries about `job` that `user` may see (the job page's section)."""
    return selectors.job_deliveries(user, job)
