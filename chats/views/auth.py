from drf_spectacular.utils import extend_schema, extend_schema_view
from drf_standardized_errors.openapi_serializers import ErrorResponse401Serializer
from rest_framework_simplejwt import views as jwt_views

from chats.serializers import TokenAccessResponseSerializer, TokenPairResponseSerializer


@extend_schema_view(
    post=extend_schema(
        summary="Log in: email and password for a JWT pair",
        responses={200: TokenPairResponseSerializer, 401: ErrorResponse401Serializer},
    )
)
class TokenObtainView(jwt_views.TokenObtainPairView):
    pass


@extend_schema_view(
    post=extend_schema(
        summary="Trade a refresh token for a new access token",
        responses={200: TokenAccessResponseSerializer, 401: ErrorResponse401Serializer},
    )
)
class TokenRefreshView(jwt_views.TokenRefreshView):
    pass
