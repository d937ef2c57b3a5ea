from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("account/notifications/", views.inbox, name="inbox"),
    path("account/notifications/read/", views.mark_read, name="mark_read"),
    path("account/notifications/bell/", views.bell, name="bell"),
    path("account/notification-rules/", views.rules, name="rules"),
    path("account/notification-rules/new/", views.rule_new, name="rule_new"),
    path("account/notification-rules/<int:rule_id>/", views.rule_detail, name="rule"),
    path("account/notification-rules/<int:rule_id>/edit/", views.rule_edit, name="rule_edit"),
    path("account/notification-rules/<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
]
