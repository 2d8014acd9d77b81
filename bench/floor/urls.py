from django.http import JsonResponse
from django.urls import path


def ping(request):
    return JsonResponse({"status": "ok"})


# /healthz and /readyz too: bench/run.py waits for /readyz and checks idleness with /healthz.
urlpatterns = [path("ping/", ping), path("healthz", ping), path("readyz", ping)]
