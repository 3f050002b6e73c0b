"""``distillguard serve``: the enforcement proxy and decision service (CONTRACT §6)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from distillguard.cli import friendly_errors

    @app.command("serve")
    @friendly_errors
    def serve(
        upstream: Annotated[
            str, typer.Option(help="Upstream API base URL, with or without a trailing /v1.")
        ],
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
        policy: Annotated[
            Path | None,
            typer.Option(help="TOML file with a [gateway] table (default: packaged gateway.toml)."),
        ] = None,
        state: Annotated[
            str | None,
            typer.Option(help="Shared state, e.g. redis://127.0.0.1:6379/0 (default: in process)."),
        ] = None,
        key_map: Annotated[
            str | None,
            typer.Option(
                help="JSON file {api_key: account_id}, or 'redis' for the dg:keymap hash. "
                "Default: the account is a keyed hash of the key."
            ),
        ] = None,
        scan_dir: Annotated[
            Path | None,
            typer.Option(help="A `scan --out` directory: its lists are loaded and hot-reloaded."),
        ] = None,
        log_dir: Annotated[
            Path | None, typer.Option(help="Where the decision log (Parquet) is written.")
        ] = Path("distillguard-log"),
        decide_token: Annotated[
            str | None,
            typer.Option(
                envvar="DISTILLGUARD_DECIDE_TOKEN",
                help="Bearer token for POST /v1/decide (default: loopback callers only).",
            ),
        ] = None,
        trust_forwarded: Annotated[
            bool, typer.Option(help="Take the client IP from X-Forwarded-For.")
        ] = False,
        instance: Annotated[str, typer.Option(help="Instance name in log file names.")] = "gw",
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    ) -> None:
        """Proxy OpenAI/Anthropic API traffic to UPSTREAM and enforce the policy ladder live."""
        import uvicorn

        from distillguard.gateway import Gateway, GatewayConfig, load_gateway_policy

        secret = os.environ.get("DISTILLGUARD_KEY_SECRET", "").encode()
        config = GatewayConfig(
            upstream=upstream,
            policy=load_gateway_policy(policy),
            state_url=state,
            key_map=key_map,
            key_secret=secret,
            scan_dir=scan_dir,
            log_dir=log_dir,
            decide_token=decide_token,
            trust_forwarded=trust_forwarded,
            instance=instance,
        )
        gateway = Gateway(config)
        limits = config.policy.limits
        uvicorn.run(
            gateway,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is honoured only with --trust-forwarded
            lifespan="on",
            loop="auto",
            http="auto",
            backlog=limits.max_inflight * 2,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            timeout_graceful_shutdown=30,
        )
