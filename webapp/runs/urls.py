from django.urls import path

from webapp.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.run_list_page, name="list"),
    path("new/", views.run_new, name="new"),
    path("new/estimate/", views.run_estimate_fragment, name="estimate"),
    path("new/test-rewards/", views.reward_test_fragment, name="test-rewards"),
    path("compare/", views.run_compare_page, name="compare"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/delete/", views.run_delete, name="delete"),
    path("<int:run_id>/update/", views.run_update, name="update"),
    path("<int:run_id>/samples/", views.run_samples_fragment, name="samples"),
    path("<int:run_id>/checkpoints/", views.run_checkpoints_fragment, name="checkpoints"),
    path("<int:run_id>/status/", views.run_status_fragment, name="status"),
]
