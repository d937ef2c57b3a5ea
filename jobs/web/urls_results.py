from django.urls import path, re_path

from jobs.web import views_results

app_name = "results"

urlpatterns = [
    path("jobs/compare/", views_results.compare, name="compare"),
    path("jobs/<uuid:job_uuid>/result/", views_results.result_view, name="result"),
    path("jobs/<uuid:job_uuid>/result/raw/", views_results.result_raw, name="result_raw"),
    re_path(
        r"^jobs/(?P<job_uuid>[0-9a-fA-F-]{36})/result\.(?P<fmt>json|csv|xlsx|parquet)$",
        views_results.result_download,
        name="result_download",
    ),
    path("analytics/", views_results.analytics_page, name="analytics"),
    re_path(
        r"^analytics/(?P<chart>trend|phases|outcomes|gantt)\.json$", views_results.analytics_data, name="analytics_data"
    ),
]
