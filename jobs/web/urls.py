from django.urls import path

from jobs.web import views, views_ops

app_name = "jobs"

urlpatterns = [
    path("", views.home, name="home"),
    path("jobs/", views.history, name="history"),
    path("jobs/rows/", views.history_rows, name="history_rows"),
    path("jobs/export.csv", views.history_export, name="history_export"),
    path("jobs/new/", views.compose, name="compose"),
    path("jobs/new/scripts/", views.compose_scripts, name="compose_scripts"),
    path("jobs/new/preview/", views.compose_preview, name="compose_preview"),
    path("jobs/<uuid:job_uuid>/", views.detail, name="detail"),
    path("jobs/<uuid:job_uuid>/live/", views.detail_live, name="detail_live"),
    path("jobs/<uuid:job_uuid>/clone/", views.clone, name="clone"),
    path("jobs/<uuid:job_uuid>/cancel/", views.cancel, name="cancel"),
    path("jobs/<uuid:job_uuid>/rerun/", views.rerun, name="rerun"),
    path("jobs/<uuid:job_uuid>/pin/", views_ops.pin, name="pin"),
    path("jobs/<uuid:job_uuid>/unpin/", views_ops.unpin, name="unpin"),
    path("storage/", views_ops.storage, name="storage"),
]
