import secrets

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from thinws_channels.conf import conf
from thinws_channels.tokens import issue_token

TOKEN_LIFETIME = 3600.0


def index(request: HttpRequest) -> HttpResponse:
    """The chat (demo_project/static/demo/chat.js). ``instance`` names the process that served
    the page; the page's socket may land on another one, named by its connect ack."""
    return render(request, "index.html", {"instance": conf.INSTANCE_NAME})


@never_cache
def token(request: HttpRequest) -> JsonResponse:
    """A connectionID of the visitor's own and a signed token for it.

    The connectionID is kept in the session, so a reload (or a new token after an hour) keeps the
    same rooms. A logged-in user gets a token that names them. Other sites cannot read this
    response (no CORS headers), and the token is useless to anyone but its holder.
    """
    connection_id = request.session.get("thinws_connection_id")
    if not connection_id:
        connection_id = request.session["thinws_connection_id"] = "web-" + secrets.token_hex(12)
    user = request.user if request.user.is_authenticated else None
    return JsonResponse(
        {
            "connectionID": connection_id,
            "token": issue_token(connection_id, user=user, expires_in=TOKEN_LIFETIME),
            "expiresIn": TOKEN_LIFETIME,
        }
    )
