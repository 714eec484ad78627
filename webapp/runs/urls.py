from django.urls import path

from webapp.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.run_list_page, name="list"),
    path("new/", views.run_new, name="new"),
]
