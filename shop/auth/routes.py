"""Auth over HTTP: public register/login, internal verify (and RPC twins for the client stub)."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response

from shop.auth.api import Auth
from shop.web import field, json_body, json_response, require_service_credential


def blueprint(auth: Auth) -> Blueprint:
    bp = Blueprint("auth", __name__)

    def register() -> Response:
        body = json_body()
        user_id = auth.register(field(body, "username", str), field(body, "password", str))
        return json_response({"user_id": user_id}, 201)

    def login() -> Response:
        body = json_body()
        token = auth.login(field(body, "username", str), field(body, "password", str))
        return json_response(asdict(token))

    bp.post("/auth/register")(register)
    bp.post("/auth/login")(login)

    @bp.post("/internal/auth/register")
    def internal_register() -> Response:
        require_service_credential()
        return register()

    @bp.post("/internal/auth/login")
    def internal_login() -> Response:
        require_service_credential()
        return login()

    @bp.post("/internal/auth/verify")
    def verify() -> Response:
        require_service_credential()
        principal = auth.verify(field(json_body(), "token", str))
        return json_response(asdict(principal))

    return bp
