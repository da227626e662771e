"""URL map: auth, admin, the classify pages and API, the reviewer pages, integrations."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from dashboard.views import metrics_view

admin.site.site_header = "Loupe administration"
admin.site.site_title = "Loupe admin"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("classify.api_urls")),
    path("api/v1/", include("reviewer.api_urls")),
    path("api/v1/", include("integrations.api_urls")),
    path("review/", include("reviewer.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("dashboard.urls")),
    path("", include("integrations.urls")),
    path("", include("classify.urls")),
    # Browsers ask for /favicon.ico before (and besides) the page's <link rel="icon">.
    path("favicon.ico", login_not_required(lambda request: HttpResponsePermanentRedirect(static("favicon.svg")))),
]

handler400 = "classify.views.bad_request"
handler403 = "classify.views.forbidden"
handler404 = "classify.views.not_found"
handler500 = "classify.views.server_error"
