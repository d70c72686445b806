"""On-demand feature views: computed at request time from request data and stored features."""

from typing import Any

from data_sources import transaction_request
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feature_views import customer_txn_7d


# How unusual the amount being scored is for this customer: amount / the customer's 7-day mean amount
# (0.0 when the customer has no recent history, so a first transaction is not flagged for that alone).
@on_demand_feature_view(
    sources=[transaction_request, customer_txn_7d],
    schema=[Field(name="amount_to_mean_7d", dtype=Float64)],
    mode="python",
    description="The transaction amount relative to the customer's 7-day mean amount.",
)
def transaction_amount_ratio(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "amount_to_mean_7d": [
            (amount / mean) if amount is not None and mean else 0.0
            for amount, mean in zip(inputs["amount"], inputs["txn_amount_mean_7d"], strict=True)
        ]
    }
