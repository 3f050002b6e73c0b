"""Real-time enforcement: ``distillguard serve``, an OpenAI/Anthropic-compatible proxy and a
decision service (CONTRACT §6).

    from distillguard.gateway import Gateway, GatewayConfig, load_gateway_policy
    app = Gateway(GatewayConfig(upstream="http://127.0.0.1:8001", policy=load_gateway_policy()))
    # any ASGI server; `distillguard serve` runs it under uvicorn

Modules: ``config`` (policy table and options), ``apis`` (wire formats), ``identity``,
``state`` (in-process and Redis), ``content`` (elicitation check), ``ladder`` (decisions),
``degrade``, ``lists`` (scan results), ``decision_log``, ``limits``, ``metrics``, ``app``.
"""

from distillguard.gateway.app import Gateway, build_app
from distillguard.gateway.config import (
    GatewayConfig,
    GatewayPolicy,
    load_gateway_policy,
    parse_gateway,
)

__all__ = [
    "Gateway",
    "GatewayConfig",
    "GatewayPolicy",
    "build_app",
    "load_gateway_policy",
    "parse_gateway",
]
