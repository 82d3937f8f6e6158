from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("token/", views.token, name="token"),
    path("admin/", admin.site.urls),
]
