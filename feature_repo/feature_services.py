"""Feature services: versioned contracts between training and serving.

A model is trained on and served from one feature service. Changing a served contract means adding
`fraud_v2`, never editing `fraud_v1` in place: models registered against v1 keep getting what they
were trained on.
"""

from feast import FeatureService
from feature_views import customer_profile, customer_txn_1h, customer_txn_7d, customer_txn_24h, merchant_risk_7d
from on_demand_views import transaction_amount_ratio

# The fraud model's features, version 1: profile, 1 h / 24 h / 7 d spending, merchant risk, and the
# amount relative to the customer's mean (which needs the request's `amount`).
fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[
        customer_profile,
        customer_txn_1h,
        customer_txn_24h,
        customer_txn_7d,
        merchant_risk_7d,
        transaction_amount_ratio,
    ],
    description="Fraud model features, version 1.",
    tags={"owner": "risk", "model": "fraud"},
)

# The same without request-time features, for callers that only have the keys (e.g. batch scoring).
fraud_stored_v1 = FeatureService(
    name="fraud_stored_v1",
    features=[customer_profile, customer_txn_1h, customer_txn_24h, customer_txn_7d, merchant_risk_7d],
    description="Fraud model stored features (no request data needed), version 1.",
    tags={"owner": "risk", "model": "fraud"},
)
