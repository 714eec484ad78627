from django.urls import path

from webapp.labeling import views

app_name = "labeling"
urlpatterns = [
    path("", views.batch_list_page, name="list"),
    path("new/", views.batch_new, name="new"),
    path("<int:batch_id>/", views.batch_detail, name="detail"),
    path("<int:batch_id>/status/", views.batch_status_fragment, name="status"),
    path("<int:batch_id>/rank/", views.batch_rank, name="rank"),
    path("<int:batch_id>/dataset/", views.batch_make_dataset, name="make-dataset"),
    path("<int:batch_id>/reward-model/", views.batch_fit_reward_model, name="reward-model"),
    path("<int:batch_id>/delete/", views.batch_delete, name="delete"),
]
