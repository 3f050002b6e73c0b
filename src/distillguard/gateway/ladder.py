"""The policy ladder: signals -> one online score -> allow ... block, with reasons.

The score is a noisy-OR of the batch scan's verdict on the account (its lists), the
account's recent elicitation share (decayed share of its prompts the classifier flagged),
this request's own elicitation score when the classifier flags it, and the profile rules
over the online features (the batch scan's features and the distinct counts).
Corroborating rules count only once the lists and content evidence alone reach the watch
rung. The highest rung the score reaches is the action; a rate limit beyond the account's
GCRA allowance is a throttle whatever the score. Accounts in ``allow_accounts`` (known
false positives) never climb.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from distillguard.features import derive_features
from distillguard.gateway.config import RANK, Action, GatewayPolicy, RateLimit
from distillguard.gateway.content import ContentResult, own_flag
from distillguard.gateway.lists import Listing
from distillguard.gateway.state import Observation


@dataclass(frozen=True)
class Decision:
    action: Action
    score: float
    reasons: tuple[str, ...]
    retry_after: float = 0.0


def _noisy_or(parts: list[tuple[float, str]]) -> float:
    keep = 1.0
    for p, _ in parts:
        keep *= 1.0 - min(max(p, 0.0), 1.0)
    return 1.0 - keep


class Ladder:
    def __init__(self, policy: GatewayPolicy, cache_size: int = 200_000) -> None:
        self.policy = policy
        self._allow = frozenset(policy.ladder.allow_accounts)
        # Last score per account: picks the rate limit *before* the state round trip.
        self._last: OrderedDict[str, float] = OrderedDict()
        self._features: dict[str, tuple[float, dict[str, float]]] = {}
        self._cache_size = cache_size
        self._min_rule_exchanges = min((r.min_exchanges for r in policy.rules), default=0.0)

    def _action_for(self, score: float) -> Action:
        lad = self.policy.ladder
        for action, threshold in (
            ("block", lad.block),
            ("degrade", lad.degrade),
            ("verify", lad.verify),
            ("throttle", lad.throttle),
            ("watch", lad.watch),
        ):
            if score >= threshold:
                return action  # type: ignore[return-value]
        return "allow"

    def _list_parts(self, listing: Listing | None) -> tuple[list[tuple[float, str]], Action]:
        if listing is None:
            return [], "allow"
        lists = self.policy.lists
        if listing.campaign_id is not None:
            why = f"scan: campaign {listing.campaign_id} member (score {listing.score:.2f})"
            return [(listing.score, why)], lists.campaign
        why = f"scan: flagged (score {listing.score:.2f})"
        return [(listing.score, why)], lists.flagged

    def rate_limit(self, account: str, listing: Listing | None) -> RateLimit:
        """The GCRA allowance for this request, decided before the state is read."""
        if account in self._allow:
            return self.policy.rate
        prior = self._last.get(account, 0.0)
        _, floor = self._list_parts(listing)
        suspect = prior >= self.policy.ladder.throttle or RANK[floor] >= RANK["throttle"]
        return self.policy.suspect_rate if suspect else self.policy.rate

    def features(self, account: str, sums: dict[str, float]) -> dict[str, float]:
        """Online features by the batch definition (``derive_features``), kept per account."""
        n = sums["n"]
        cached = self._features.get(account)
        # Shares move by at most 1/n per exchange: recomputing once the account has grown by
        # 5% keeps every feature within a few percent of exact at a fraction of the cost.
        if cached is not None and n - cached[0] < max(1.0, n / 20):
            return cached[1]
        feats = {k: float(v) for k, v in derive_features(sums).items()}
        if len(self._features) >= self._cache_size:
            self._features.clear()
        self._features[account] = (n, feats)
        return feats

    def decide(
        self,
        account: str,
        listing: Listing | None,
        obs: Observation | None,
        content: ContentResult | None,
    ) -> Decision:
        pol = self.policy
        parts, floor = self._list_parts(listing)
        # Below the classifier's own threshold a prompt is not evidence: ordinary prompts
        # score around 0.3, and adding that to every request would watch every account.
        if content is not None and own_flag(content):
            parts.append(
                (
                    pol.content.request_weight * content.elicitation,
                    f"content: elicitation {content.elicitation:.2f}"
                    + (f" ({', '.join(content.signals[:3])})" if content.signals else ""),
                )
            )
        # A system prompt that asks for training data is the account's configuration: one
        # fixed piece of evidence, whether this request carries it or an earlier one did.
        if (content is not None and content.system_only) or (
            obs is not None and obs.content.get("c_sys_elicit", 0) > 0
        ):
            parts.append(
                (pol.content.system_weight, "content: the system prompt asks for training data")
            )
        if obs is not None:
            if obs.decayed_n >= pol.content.account_min_requests and obs.decayed_elicitation > 0:
                share = min(obs.decayed_elicitation / obs.decayed_n, 1.0)
                parts.append(
                    (pol.content.account_weight * share, f"content: recent elicitation {share:.2f}")
                )
            n = obs.sums["n"]
            if pol.rules and n >= self._min_rule_exchanges:
                feats = self.features(account, obs.sums)
                distinct = obs.distinct
                # evidence other than usage shape: what corroborating rules need first
                evidence = _noisy_or(parts)
                for rule in pol.rules:
                    f = rule.feature
                    value = distinct[f] if f in distinct else feats.get(f, 0.0)
                    if n < rule.min_exchanges or value < rule.min:
                        continue
                    if rule.corroborating and evidence < pol.ladder.watch:
                        continue
                    parts.append((rule.weight, f"profile: {f} {value:.2f}"))
        score = _noisy_or(parts)
        if account in self._allow:
            action: Action = "allow"
            reasons = ["policy: known false positive", *(r for p, r in parts if p > 0)]
        else:
            action = self._action_for(score)
            if RANK[floor] > RANK[action]:
                action = floor
            reasons = [r for p, r in sorted(parts, key=lambda x: -x[0]) if p > 0]
        self._last[account] = score
        self._last.move_to_end(account)
        if len(self._last) > self._cache_size:
            self._last.popitem(last=False)
        retry = obs.retry_after if obs is not None else 0.0
        if retry > 0 and RANK[action] < RANK["verify"]:
            limit = "suspect" if self.rate_limit(account, listing) is pol.suspect_rate else "base"
            return Decision("throttle", score, (f"rate: over the {limit} limit", *reasons), retry)
        if action == "throttle":  # within the suspect allowance: served, but watched closely
            action = "watch"
            reasons.insert(0, "rate: suspect limit applies")
        return Decision(action, score, tuple(reasons), 0.0)
