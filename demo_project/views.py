from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "index.html",
        {"instance": settings.THINWS_CHANNELS.get("INSTANCE_NAME") or "this server"},
    )
